"""``depstrace report`` reads a 200 MB trace with flat memory (a memory assertion: peak
RSS of the report's process, never its time)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from report_traces import make_trace

SIZE = 200 * 1024 * 1024
OFFENDING_EVERY = 20  # one request in 20 reached the production database
# The report's process imports depstrace and its dependencies (~40 MB on CPython 3.11);
# reading the whole file into records would take well over 1 GB.
HEADROOM_MB = 80

# Runs the report as its only child, so RUSAGE_CHILDREN is that process's peak alone
# (the test process's own children, pytester runs among them, would blur it).
MEASURE = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "depstrace", "report", *sys.argv[1:]],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.stderr)
"""


def peak(*args: str) -> tuple[int, float]:
    """Exit status and peak RSS in MB of ``depstrace report ARGS`` in a subprocess."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, check=True
    ).stdout
    status, kilobytes, err = out.split(" ", 2)
    assert not err.strip(), err
    return int(status), int(kilobytes) / 1024  # ru_maxrss is in kilobytes on Linux


def grow(base: Path, path: Path, size: int) -> int:
    """Write ``path``: ``base``'s records, its requests repeated under new ids and tests
    (5 requests a test, 20 tests a module) until the file holds ``size`` bytes; return
    how many requests it holds."""
    records = [json.loads(line) for line in base.read_text(encoding="utf-8").splitlines()]
    requests = [r for r in records if r["type"] == "request"]
    clean = [r for r in requests if not r["findings"]]
    offending = [r for r in requests if r["findings"]]
    count = 0
    with path.open("w", encoding="utf-8") as file:
        for record in records:
            if record["type"] not in ("request", "summary"):
                file.write(json.dumps(record) + "\n")
        while file.tell() < size:
            pick = offending if count % OFFENDING_EVERY == 0 else clean
            request = pick[count % len(pick)]
            test = f"tests/test_module{count // 100}.py::test_{count // 5 % 20}"
            file.write(json.dumps(request | {"id": f"r{count + 1}", "test": test}) + "\n")
            count += 1
        summary = next(r for r in records if r["type"] == "summary")
        file.write(json.dumps(summary | {"requests": count}) + "\n")
    return count


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No structlog lines from the in-process trace."""
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "off")


@pytest.fixture(scope="module")
def traces(
    tmp_path_factory: pytest.TempPathFactory, make_prod_dir: Callable[[], Path]
) -> tuple[Path, Path]:
    """A real 5-request trace and a 200 MB one grown from it."""
    data = tmp_path_factory.mktemp("memory")
    small = make_trace(data / "small.jsonl", data, make_prod_dir())
    big = data / "big.jsonl"
    assert grow(small, big, SIZE) > 50_000
    return small, big


@pytest.mark.parametrize(
    "args",
    [[], ["--format", "json"], ["--format", "html", "-o", "/dev/null"]],
    ids=["text", "json", "html"],
)
def test_200_mb_trace_in_flat_memory(traces: tuple[Path, Path], args: list[str]) -> None:
    """The report of a 200 MB trace peaks within HEADROOM_MB of the 5-request trace's."""
    small, big = traces
    status_small, small_mb = peak(str(small), *args)
    status_big, big_mb = peak(str(big), *args)
    assert (status_small, status_big) == (1, 1)
    assert big_mb < small_mb + HEADROOM_MB, f"{big_mb:.0f} MB vs {small_mb:.0f} MB"
