"""Wall time of a traced suite when the OTLP collector is down: prints times and ratios.

Writes a small FastAPI app and a suite of tests (TestClient, a dependency tree,
a SQLite session per request) to a temporary directory and runs it with
``python -m pytest`` in a subprocess, several times per configuration:

* without depstrace, and with ``DEPSTRACE=1`` but no exporter (the baselines);
* exporting to a live OTLP receiver (HTTP);
* to a port that refuses connections, and to a listener that accepts and never
  answers, over OTLP/HTTP and OTLP/gRPC.

Configurations run round-robin, so load from other work on the machine spreads
over all of them.  For each it prints medians of: the wall time (and its ratio
to the untraced run and to the traced run without export), the CPU time of the
pytest process, and the tail from the end of the last test to the exit of the
process (where waiting for a dead collector would show); then the exit codes
and the depstrace warning lines printed.  Asserts nothing.

    .venv/bin/python benchmarks/collector_down.py [tests] [repeats]

``DEPSTRACE_EXPORT_TIMEOUT``, when set, is passed on to every traced run.
"""

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from otlp_receiver import (  # the receivers live with the tests
    GrpcReceiver,
    HttpReceiver,
    RefusingPort,
    SilentReceiver,
)

APP = """
import os
from typing import Annotated, Iterator

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session

engine = sa.create_engine(f"sqlite:///{os.environ['BENCH_DATA']}/test_bench.db")


def get_db() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


def settings() -> dict[str, int]:
    return {"page": 10}


def user(cfg: Annotated[dict[str, int], Depends(settings)]) -> str:
    return "ada"


app = FastAPI()


@app.get("/items/{n}")
def items(
    n: int,
    db: Annotated[Session, Depends(get_db)],
    who: Annotated[str, Depends(user)],
    cfg: Annotated[dict[str, int], Depends(settings)],
) -> int:
    return n + len(db.execute(sa.text("SELECT 1")).all())
"""

TESTS = """
import pytest
from fastapi.testclient import TestClient

from app import app


@pytest.fixture(scope="module")
def client():
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("n", range({tests}))
def test_items(client, n):
    for _ in range(3):
        assert client.get(f"/items/{{n}}").json() == n + 1
"""


# Measures the tail: from the end of the last test to the exit of the process,
# where an end-of-run flush to a dead collector would show.
CONFTEST = """
import atexit
import time

_ended = []


def pytest_sessionfinish():
    _ended.append(time.perf_counter())


@atexit.register
def _tail():
    if _ended:
        print(f"BENCH_TAIL {time.perf_counter() - _ended[0]:.3f}")
"""


@dataclass
class Run:
    """What one pytest run took and printed."""

    wall: float
    cpu: float  # user + system seconds of the pytest process
    tail: float  # seconds from the end of the last test to the process exit
    warnings: list[str]
    code: int


def run_suite(directory: Path, env: dict[str, str]) -> Run:
    """Run the suite once in a subprocess."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DEPSTRACE", "OTEL_"))}
    if TIMEOUT:
        environ["DEPSTRACE_EXPORT_TIMEOUT"] = TIMEOUT
    environ |= {"BENCH_DATA": str(directory), "PYTHONPATH": str(directory), **env}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore"],
        cwd=directory,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = done.stdout + done.stderr
    tails = [
        float(line.split()[1]) for line in output.splitlines() if line.startswith("BENCH_TAIL")
    ]
    warnings = [
        line
        for line in output.splitlines()
        if "not delivered" in line or "Failed to export" in line or "Transient error" in line
    ]
    return Run(elapsed, cpu, tails[0] if tails else float("nan"), warnings, done.returncode)


TIMEOUT = os.environ.get("DEPSTRACE_EXPORT_TIMEOUT", "")  # passed on when set
Target = Callable[[], AbstractContextManager[Any]]


def configurations() -> list[tuple[str, Target | None, dict[str, str]]]:
    """(label, receiver factory, environment) for each measured run."""
    traced = {"DEPSTRACE": "1"}
    grpc = {**traced, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    return [
        ("no depstrace", None, {}),
        ("depstrace, no exporter", None, traced),
        ("depstrace -> live receiver (http)", HttpReceiver, traced),
        ("depstrace -> refused (http)", RefusingPort, traced),
        ("depstrace -> never answers (http)", SilentReceiver, traced),
        ("depstrace -> live receiver (grpc)", GrpcReceiver, grpc),
        ("depstrace -> refused (grpc)", RefusingPort, grpc),
        ("depstrace -> never answers (grpc)", SilentReceiver, grpc),
    ]


def main() -> None:
    tests = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "app.py").write_text(APP)
        (directory / "test_bench.py").write_text(TESTS.format(tests=tests))
        (directory / "conftest.py").write_text(CONFTEST)
        run_suite(directory, {})  # warm the bytecode caches
        configs = configurations()
        runs: list[list[Run]] = [[] for _ in configs]
        # Round-robin, so load from other processes spreads over every configuration.
        for _ in range(repeats):
            for index, (_, target, env) in enumerate(configs):
                if target is None:
                    runs[index].append(run_suite(directory, env))
                else:
                    with target() as receiver:
                        endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
                        runs[index].append(run_suite(directory, env | endpoint))
    median = statistics.median
    plain = median(r.wall for r in runs[0])
    quiet = median(r.wall for r in runs[1])
    timeout = f"DEPSTRACE_EXPORT_TIMEOUT={TIMEOUT}" if TIMEOUT else "default export timeout (3s)"
    print(f"suite: {tests} tests x 3 requests; medians of {repeats} interleaved runs; {timeout}")
    print(
        f"{'configuration':36} {'wall s':>6} {'/plain':>6} {'/traced':>7} {'cpu s':>6} "
        f"{'tail s':>6}  exit  warnings"
    )
    for index, (label, _, _) in enumerate(configs):
        wall = median(r.wall for r in runs[index])
        notes = set()
        for r in runs[index]:
            reasons = [w.rsplit(" (", 1)[-1].rstrip(")") for w in r.warnings]
            notes.add(f"{len(r.warnings)} line: {', '.join(reasons)}" if r.warnings else "none")
        codes = ",".join(sorted({str(r.code) for r in runs[index]}))
        print(
            f"{label:36} {wall:6.2f} {wall / plain:6.2f} {wall / quiet:7.2f} "
            f"{median(r.cpu for r in runs[index]):6.2f} {median(r.tail for r in runs[index]):6.2f}"
            f"  {codes:>4}  {'; '.join(sorted(notes))}"
        )


if __name__ == "__main__":
    main()
