"""depstrace's overhead and memory, side by side with OpenTelemetry: prints tables, asserts nothing.

    .venv/bin/python benchmarks/run.py            # the full run (several minutes)
    .venv/bin/python benchmarks/run.py --quick    # CI: the same tables, fewer rounds (< 60 s)

Every variant runs in its own worker process (so patches never mix), started
once and driven over a pipe: the parent asks each worker in turn for one round
of one scenario, so load from other work on the machine falls on all variants
alike.  Each cell is the median over rounds of the per-request median, with the
min-max of the round medians; ratios are to the uninstrumented app in the same
round.  Variants:

* ``none``: the app alone;
* ``disabled``: depstrace imported, its pytest plugin module loaded, not
  enabled (the worker checks that nothing is patched);
* ``depstrace``: ``depstrace.instrument()`` with a trace file;
* ``depstrace+spans``: the same, with an SDK tracer provider whose exporter drops
  every span (depstrace's per-``Depends`` spans are built and "exported");
* ``otel``: OpenTelemetry's FastAPI + SQLAlchemy instrumentation, same provider;
* ``fastapi-telemetry`` (FastAPI >= 0.142): the same provider and nothing else, so
  FastAPI's built-in telemetry makes its own spans;
* ``logfire`` (where logfire is installed, best in a venv of its own: its
  ``.pth`` file imports requests and OpenTelemetry's exporter into every process
  of the environment, which the test suite notices): Logfire's
  ``instrument_fastapi`` + ``instrument_sqlalchemy``, configured not to send.

Scenarios: the reference app (12 ``Depends`` over 3 levels: async, sync in the
threadpool, a generator yielding a SQLAlchemy session on a SQLite file, a cached
dependency used twice, a class instance, a ``Security`` one, an override; one
``SELECT``); a one-dependency endpoint; chains of 1, 8, 32 and 128 dependencies;
1 and 33 statements per request.  Drivers: the ASGI app called directly (only
app + tracer time), ``httpx.AsyncClient`` over ``ASGITransport`` and, in the
full run, ``TestClient``.  Then memory (RSS growth and retained bytes per
request with depstrace on) and ``depstrace report`` over a large trace.
"""

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

HERE = Path(__file__).resolve()
VARIANTS = ("none", "disabled", "depstrace", "depstrace+spans", "otel")
# Run when this environment has them (the parent looks before starting workers).
OPTIONAL_VARIANTS = {"fastapi-telemetry": "fastapi.telemetry", "logfire": "logfire"}
CHAINS = (1, 8, 32, 128)
STATEMENTS = (1, 33)
# depstrace report holds every record it reads (about 25 KB each for the reference
# request): 1,000,000 would need some 25 GB, so the full run reads 100,000.
REPORT_RECORDS = 100_000


# --- the apps -----------------------------------------------------------------------


def build_apps(db_path: Path) -> tuple[dict[str, Any], list[Any]]:
    """Every scenario's FastAPI app (by name) and the SQLAlchemy engines they use."""
    import sqlalchemy as sa
    from fastapi import Depends, FastAPI, Security
    from fastapi.security import SecurityScopes
    from sqlalchemy.orm import Session

    # A pool for uvicorn at concurrency 32: the endpoint is async and runs its SELECT
    # on the event loop, so a request waiting for a connection blocks every other.
    engine = sa.create_engine(f"sqlite:///{db_path}", pool_size=40)
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")
        )
        conn.execute(sa.text("INSERT INTO items (name) VALUES ('ada')"))
    select_one = sa.text("SELECT id, name FROM items WHERE id = 1")

    def get_db() -> Iterator[Session]:
        with Session(engine) as session:
            yield session

    def settings() -> dict[str, int]:  # sync: FastAPI runs it in the threadpool
        return {"page_size": 10}

    async def token(cfg: Annotated[dict[str, int], Depends(settings)]) -> str:
        return "t0ken"

    async def current_user(
        scopes: SecurityScopes, tok: Annotated[str, Depends(token)]
    ) -> dict[str, Any]:
        return {"name": "ada", "scopes": scopes.scopes}

    class Paginator:  # a class instance as dependency
        def __init__(self, limit: int) -> None:
            self.limit = limit

        async def __call__(self, page: int = 1) -> tuple[int, int]:
            return page, self.limit

    async def feature_flag() -> bool:
        return False

    async def feature_flag_on() -> bool:  # the override
        return True

    class Repository:  # a class: instantiated in the threadpool
        def __init__(self, db: Annotated[Session, Depends(get_db)]) -> None:
            self.db = db

    async def audit(
        user: Annotated[dict[str, Any], Security(current_user, scopes=["items"])],
        cfg: Annotated[dict[str, int], Depends(settings)],
    ) -> str:
        return user["name"]

    reference = FastAPI(title="reference")

    @reference.get("/items")
    async def list_items(
        repo: Annotated[Repository, Depends(Repository)],
        user: Annotated[dict[str, Any], Security(current_user, scopes=["items"])],
        page: Annotated[tuple[int, int], Depends(Paginator(limit=10))],
        flag: Annotated[bool, Depends(feature_flag)],
        who: Annotated[str, Depends(audit)],
    ) -> dict[str, Any]:
        row = repo.db.execute(select_one).one()
        return {"id": row[0], "name": row[1], "flag": flag, "page": page[0], "who": who}

    reference.dependency_overrides[feature_flag] = feature_flag_on

    trivial = FastAPI(title="trivial")

    async def one() -> int:
        return 1

    @trivial.get("/")
    async def ping(x: Annotated[int, Depends(one)]) -> int:
        return x

    apps: dict[str, Any] = {"reference": reference, "trivial": trivial}
    for length in CHAINS:
        apps[f"chain{length}"] = _chain_app(length)
    for count in STATEMENTS:
        apps[f"statements{count}"] = _statements_app(count, get_db, select_one)
    return apps, [engine]


def _chain_app(length: int) -> Any:
    """``length`` async dependencies, each depending on the one before."""
    from fastapi import Depends, FastAPI

    async def first() -> int:
        return 0

    previous: Callable[..., Any] = first
    for _ in range(length - 1):

        async def link(x: int = Depends(previous)) -> int:
            return x + 1

        previous = link
    app = FastAPI(title=f"chain{length}")
    last = previous

    @app.get("/")
    async def endpoint(x: Annotated[int, Depends(last)]) -> int:
        return x

    return app


def _statements_app(count: int, get_db: Callable[..., Any], statement: Any) -> Any:
    from fastapi import Depends, FastAPI
    from sqlalchemy.orm import Session

    app = FastAPI(title=f"statements{count}")

    @app.get("/")
    def endpoint(db: Annotated[Session, Depends(get_db)]) -> int:
        for _ in range(count):
            db.execute(statement).one()
        return count

    return app


PATHS = {"reference": "/items?page=2"}


# --- one worker process per variant -------------------------------------------------


class _DropExporter:
    """An OpenTelemetry span exporter that drops every span (costs nothing to send)."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _sdk_provider() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_DropExporter()))  # type: ignore[arg-type]
    trace.set_tracer_provider(provider)


def _setup(variant: str, tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Install ``variant`` and build the apps; returns (apps, facts to show)."""
    facts: dict[str, Any] = {}
    if variant in ("depstrace", "depstrace+spans"):
        if variant == "depstrace+spans":
            _sdk_provider()
        import depstrace

        depstrace.instrument(trace_file=tmp / "trace.jsonl")
    if variant == "disabled":
        import fastapi
        from fastapi.dependencies import utils

        import depstrace
        import depstrace.pytest_plugin  # loaded as pytest loads it

        before = (fastapi.FastAPI.__call__, utils.solve_dependencies)
    apps, engines = build_apps(tmp / "test_bench.db")
    if variant == "disabled":
        after = (fastapi.FastAPI.__call__, utils.solve_dependencies)
        facts["patched"] = [a is not b for a, b in zip(before, after, strict=True)]
        facts["nothing_patched"] = not any(facts["patched"]) and not depstrace.is_instrumented()
    if variant == "fastapi-telemetry":
        _sdk_provider()  # FastAPI's own telemetry turns on when a provider is installed
    if variant == "logfire":
        import logfire

        logfire.configure(send_to_logfire=False, console=False, inspect_arguments=False)
        for app in apps.values():
            logfire.instrument_fastapi(app)
        # Like the otel variant: its SQLAlchemy instrumentation pins sqlalchemy<2.1.
        logfire.instrument_sqlalchemy(engines=engines, skip_dep_check=True)
    if variant == "otel":
        _sdk_provider()
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        for app in apps.values():
            FastAPIInstrumentor.instrument_app(app)
        # The SQLAlchemy instrumentation pins sqlalchemy<2.1; it runs on 2.1 all the same.
        SQLAlchemyInstrumentor().instrument(engines=engines, skip_dep_check=True)
    return apps, facts


def _asgi_request(path: str) -> tuple[dict[str, Any], Callable[..., Any], Callable[..., Any]]:
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"{path}: status {message['status']}")

    return scope, receive, send


async def _time_asgi(app: Any, path: str, n: int) -> list[float]:
    timings = []
    clock = time.perf_counter
    for _ in range(n):
        scope, receive, send = _asgi_request(path)
        start = clock()
        await app(scope, receive, send)
        timings.append(clock() - start)
    return timings


async def _time_httpx(app: Any, path: str, n: int) -> list[float]:
    import httpx

    timings = []
    clock = time.perf_counter
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for _ in range(n):
            start = clock()
            response = await client.get(path)
            timings.append(clock() - start)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: status {response.status_code}")
    return timings


def _time_testclient(app: Any, path: str, n: int) -> list[float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

        client = TestClient(app)
    timings = []
    clock = time.perf_counter
    with client:
        for _ in range(n):
            start = clock()
            response = client.get(path)
            timings.append(clock() - start)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: status {response.status_code}")
    return timings


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory(app: Any, n: int) -> dict[str, Any]:
    """RSS growth over ``n`` requests (after a warm-up), sampled ten times."""
    loop = asyncio.new_event_loop()
    path = PATHS.get("reference", "/")
    loop.run_until_complete(_time_asgi(app, path, 500))
    gc.collect()
    start = _rss()
    samples = []
    step = max(n // 10, 1)
    for _ in range(10):
        loop.run_until_complete(_time_asgi(app, path, step))
        samples.append(_rss() - start)
    loop.close()
    return {"requests": step * 10, "rss_growth": samples[-1], "samples": samples}


def _retained(app: Any, n: int) -> dict[str, Any]:
    """Bytes still allocated after ``n`` requests, per request (tracemalloc)."""
    loop = asyncio.new_event_loop()
    path = PATHS.get("reference", "/")
    loop.run_until_complete(_time_asgi(app, path, 200))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    loop.run_until_complete(_time_asgi(app, path, n))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    loop.close()
    return {"requests": n, "bytes_per_request": (after - before) / n}


def _serve(app: Any, servers: list[Any]) -> int:
    """Start uvicorn on 127.0.0.1 (a free port) serving ``app`` in a thread of this
    worker; the port, once it accepts connections."""
    import threading

    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers) and time.monotonic() < deadline:
        time.sleep(0.01)
    servers.append((server, thread))
    return int(server.servers[0].sockets[0].getsockname()[1])


def _stop(servers: list[Any]) -> None:
    while servers:
        server, thread = servers.pop()
        server.should_exit = True
        thread.join(timeout=30)


def worker(variant: str) -> None:
    """Serve the parent's commands on stdin, one JSON line of answer each."""
    warnings.simplefilter("ignore")
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers on the pipe
    with tempfile.TemporaryDirectory() as tmp:
        apps, facts = _setup(variant, Path(tmp))
        loop = asyncio.new_event_loop()
        for name, app in apps.items():  # warm-up: caches, pools, first-seen engines
            loop.run_until_complete(_time_asgi(app, PATHS.get(name, "/"), 20))
        facts["nodes"] = _reference_nodes(variant)
        out.write(json.dumps({"ready": variant, "facts": facts}) + "\n")
        out.flush()
        servers: list[Any] = []
        for line in sys.stdin:
            command, *args = line.split()
            if command == "quit":
                break
            answer: Any
            if command == "time":
                driver, scenario, n = args[0], args[1], int(args[2])
                app, path = apps[scenario], PATHS.get(scenario, "/")
                if driver == "asgi":
                    timings = loop.run_until_complete(_time_asgi(app, path, n))
                elif driver == "httpx":
                    timings = loop.run_until_complete(_time_httpx(app, path, n))
                else:
                    timings = _time_testclient(app, path, n)
                answer = statistics.median(timings)
            elif command == "serve":
                answer = _serve(apps["reference"], servers)
            elif command == "stop":
                answer = _stop(servers)
            elif command == "memory":
                answer = _memory(apps["reference"], int(args[0]))
            elif command == "retained":
                answer = _retained(apps["reference"], int(args[0]))
            else:
                answer = None
            out.write(json.dumps({"answer": answer}) + "\n")
            out.flush()
        loop.close()
        if variant.startswith("depstrace"):
            import depstrace

            depstrace.uninstrument()


def _reference_nodes(variant: str) -> int | None:
    if not variant.startswith("depstrace"):
        return None
    from depstrace._session import active_session

    session = active_session()
    if session is None:
        return None
    for record in reversed(session.requests):
        if record.get("path") == "/items":
            return len(record["dependencies"])
    return None


# --- the parent: rounds, tables ---------------------------------------------------------


class Worker:
    """A worker process of one variant, driven line by line."""

    def __init__(self, variant: str, before: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPSTRACE", "OTEL_"))}
        env["PYTHONHASHSEED"] = "0"
        role = variant
        if variant == "before":  # depstrace recording, imported from another checkout
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [before, env.get("PYTHONPATH")]))
            role = "depstrace"
        self.variant = variant
        self.process = subprocess.Popen(
            [sys.executable, str(HERE), "--worker", role],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.facts: dict[str, Any] = self._read()["facts"]

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"worker {self.variant} died (see its stderr above)")
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, *command: object) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(map(str, command)) + "\n")
        self.process.stdin.flush()
        return self._read()["answer"]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        self.process.wait(timeout=60)


def _cell(values: list[float]) -> str:
    return (
        f"{statistics.median(values) * 1e6:8.1f} ({min(values) * 1e6:.0f}-{max(values) * 1e6:.0f})"
    )


def _ratio_cell(values: list[float]) -> str:
    return f"x{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def print_table(title: str, rows: list[list[str]], header: list[str]) -> None:
    """A plain-text table with a title line (pasted as is into benchmarks/README.md)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(f"\n## {title}\n")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def timings(
    workers: dict[str, Worker], cells: list[tuple[str, str, int]], rounds: int
) -> dict[tuple[str, str, str], list[float]]:
    """Per (driver, scenario, variant): the per-request median of each round, in seconds.
    Rounds go cell by cell, variant by variant, the variant order rotating each round."""
    results: dict[tuple[str, str, str], list[float]] = {}
    names = list(workers)
    for round_number in range(rounds):
        order = names[round_number % len(names) :] + names[: round_number % len(names)]
        for driver, scenario, n in cells:
            for variant in order:
                value = workers[variant].ask("time", driver, scenario, n)
                results.setdefault((driver, scenario, variant), []).append(value)
    return results


def _ratios(
    results: dict[tuple[str, str, str], list[float]], driver: str, scenario: str, variant: str
) -> list[float]:
    base = results[(driver, scenario, "none")]
    return [v / b for v, b in zip(results[(driver, scenario, variant)], base, strict=True)]


def _slope(
    results: dict[tuple[str, str, str], list[float]],
    *,
    driver: str,
    low: str,
    high: str,
    steps: int,
    variant: str,
) -> list[float]:
    """Extra seconds per step (node, statement) that ``variant`` adds, per round."""
    out = []
    for i in range(len(results[(driver, low, "none")])):
        plain = results[(driver, high, "none")][i] - results[(driver, low, "none")][i]
        traced = results[(driver, high, variant)][i] - results[(driver, low, variant)][i]
        out.append((traced - plain) / steps)
    return out


def wrk(port: int, connections: int, seconds: float) -> dict[str, float] | None:
    """``wrk`` (one thread, ``connections`` keep-alive connections) against the
    reference endpoint: requests/s and the median latency in seconds; None when wrk
    is not installed."""
    if shutil.which("wrk") is None:
        return None
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            f"http://127.0.0.1:{port}{PATHS['reference']}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rate = float(re.search(r"Requests/sec:\s*([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)", done.stdout).groups()  # type: ignore[union-attr]
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if errors:
        raise SystemExit(f"wrk: {errors.group(1)} failed responses from the reference endpoint")
    return {"rate": rate, "p50": float(value) * scale}


def served(
    workers: dict[str, Worker], rounds: int, seconds: float
) -> dict[tuple[int, str], list[dict[str, float]]] | None:
    """uvicorn under wrk at concurrency 1 and 32, variant by variant, the order
    rotating each round; None without wrk."""
    if shutil.which("wrk") is None:
        return None
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    names = list(workers)
    for round_number in range(rounds):
        order = names[round_number % len(names) :] + names[: round_number % len(names)]
        for variant in order:
            port = workers[variant].ask("serve")
            try:
                wrk(port, 1, 1)  # warm-up: connections, caches
                for connections in (1, 32):
                    result = wrk(port, connections, seconds)
                    assert result is not None
                    results.setdefault((connections, variant), []).append(result)
            finally:
                workers[variant].ask("stop")
    return results


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _versions() -> str:
    from importlib.metadata import version

    names = ["fastapi", "starlette", "sqlalchemy", "httpx", "opentelemetry-sdk"]
    names.append("opentelemetry-instrumentation-fastapi")
    if _importable("logfire"):
        names.append("logfire")
    parts = [f"Python {platform.python_version()}"] + [f"{n} {version(n)}" for n in names]
    return ", ".join(parts)


def _machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "?")
    load = os.getloadavg()
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), load {load[0]:.2f} at start"


def report_benchmark(records: int, tmp: Path) -> dict[str, float]:
    """``depstrace report`` over a trace of ``records`` request records: records/s, peak RSS."""
    path = tmp / "big.jsonl"
    with tempfile.TemporaryDirectory() as source:
        sample = Path(source) / "trace.jsonl"
        subprocess.run(
            [sys.executable, str(HERE), "--sample-trace", str(sample)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        parsed = [json.loads(line) for line in sample.read_text().splitlines()]
    head = [r for r in parsed if r["type"] in ("session", "engine")]
    requests = [r for r in parsed if r["type"] == "request"]
    summary = next(r for r in parsed if r["type"] == "summary") | {"requests": records}
    with path.open("w") as out:
        out.writelines(json.dumps(r) + "\n" for r in head)
        for i in range(records):
            request = requests[i % len(requests)] | {"id": f"r{i + 1}", "test": f"t.py::t{i // 5}"}
            out.write(json.dumps(request) + "\n")
        out.write(json.dumps(summary) + "\n")
    command = [sys.executable, str(HERE), "--report-child", str(path)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    peak = json.loads(done.stdout.splitlines()[-1])["peak_rss"]
    return {"records": records, "seconds": elapsed, "peak_rss": peak}


def report_child(path: str) -> None:
    """``depstrace report PATH`` in this process, then its peak RSS as a JSON line."""
    import io

    from depstrace.cli import main as cli_main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli_main(["report", path])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss": peak}))


def sample_trace(path: str) -> None:
    """A real trace file of a few reference requests (the report benchmark copies them)."""
    import depstrace

    with tempfile.TemporaryDirectory() as tmp:
        depstrace.instrument(trace_file=path)
        apps, _ = build_apps(Path(tmp) / "test_bench.db")
        loop = asyncio.new_event_loop()
        loop.run_until_complete(_time_asgi(apps["reference"], PATHS["reference"], 3))
        loop.close()
        depstrace.uninstrument()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI, < 60 s)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sample-trace", help=argparse.SUPPRESS)
    parser.add_argument("--report-child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also run depstrace imported from DIR (a directory holding another version's "
        "depstrace/ package, e.g. from `git archive main depstrace | tar -x -C DIR`) "
        "as the variant 'before'",
    )
    args = parser.parse_args(argv)
    if args.report_child:
        report_child(args.report_child)
        return 0
    if args.sample_trace:
        sample_trace(args.sample_trace)
        return 0
    if args.worker:
        worker(args.worker)
        return 0
    quick = args.quick
    rounds, n = (3, 30) if quick else (7, 100)
    optional = tuple(v for v, module in OPTIONAL_VARIANTS.items() if _importable(module))
    variants = VARIANTS + optional + (("before",) if args.before else ())
    print("# depstrace benchmark" + (" (quick: few rounds, read the shape only)" if quick else ""))
    print(f"\nmachine: {_machine()}\nversions: {_versions()}")
    print(f"rounds: {rounds}, requests per round and cell: {n}; cells are the median of the")
    print("round medians in microseconds per request (min-max of the rounds); ratios to 'none'")
    workers = {variant: Worker(variant, args.before) for variant in variants}
    try:
        nodes = workers["depstrace"].facts.get("nodes")
        disabled = workers["disabled"].facts
        cells = [("asgi", "reference", n), ("httpx", "reference", n), ("asgi", "trivial", n)]
        cells += [("asgi", f"chain{length}", max(n // 4, 10)) for length in CHAINS]
        cells += [("asgi", f"statements{count}", max(n // 4, 10)) for count in STATEMENTS]
        cells += [("httpx", "trivial", n)]
        if not quick:
            cells += [("testclient", "reference", n)]
        results = timings(workers, cells, rounds)
        header = ["driver", "scenario", *variants]
        rows = []
        for driver, scenario, _ in cells:
            rows.append(
                [driver, scenario] + [_cell(results[(driver, scenario, v)]) for v in variants]
            )
        print_table("Latency per request, us (median, min-max over rounds)", rows, header)
        rows = []
        for driver, scenario, _ in cells:
            rows.append(
                [driver, scenario]
                + [_ratio_cell(_ratios(results, driver, scenario, v)) for v in variants[1:]]
            )
        print_table("Ratio to the uninstrumented app", rows, ["driver", "scenario", *variants[1:]])
        rows = []
        for variant in variants[1:]:
            node = _slope(
                results,
                driver="asgi",
                low="chain1",
                high=f"chain{CHAINS[-1]}",
                steps=CHAINS[-1] - 1,
                variant=variant,
            )
            statement = _slope(
                results,
                driver="asgi",
                low=f"statements{STATEMENTS[0]}",
                high=f"statements{STATEMENTS[-1]}",
                steps=STATEMENTS[-1] - STATEMENTS[0],
                variant=variant,
            )
            rows.append([variant, _cell(node), _cell(statement)])
        print_table(
            "Cost per extra Depends node and per statement, us (slopes, ASGI driver)",
            rows,
            ["variant", "per Depends node", "per statement"],
        )
        uvicorn_rounds, seconds = (1, 1.0) if quick else (rounds, 5.0)
        loaded = served(workers, uvicorn_rounds, seconds)
        if loaded is None:
            print("\nuvicorn under load: skipped, wrk is not installed (apt install wrk)")
        else:
            rows = []
            for connections in (1, 32):
                base = loaded[(connections, "none")]
                row = [f"uvicorn c={connections}"]
                for v in variants:
                    runs = loaded[(connections, v)]
                    rate = statistics.median(r["rate"] for r in runs)
                    ratio = statistics.median(
                        b["rate"] / r["rate"] for r, b in zip(runs, base, strict=True)
                    )
                    p50 = statistics.median(r["p50"] for r in runs) * 1e6
                    row.append(f"{rate:7.0f}/s {p50:6.0f} us x{ratio:.2f}")
                rows.append(row)
            print_table(
                f"uvicorn on 127.0.0.1 under wrk, reference endpoint ({uvicorn_rounds} x "
                f"{seconds:.0f} s per cell): requests/s, median latency, time per request "
                "to 'none'",
                rows,
                ["driver", *variants],
            )
        print(f"\nreference endpoint: {nodes} dependency nodes as depstrace records them")
        print(f"disabled: nothing patched = {disabled.get('nothing_patched')}")
        memory_requests = 5_000 if quick else 100_000
        memory = workers["depstrace"].ask("memory", memory_requests)
        retained = workers["depstrace"].ask("retained", 500 if quick else 2_000)
        rows = [
            [
                "depstrace (trace file on)",
                f"{memory['requests']:,}",
                f"{memory['rss_growth'] / 2**20:.1f} MiB",
                f"{retained['bytes_per_request']:.0f} B",
            ]
        ]
        print_table(
            "Memory, reference endpoint",
            rows,
            ["variant", "requests", "RSS growth", "retained per request (tracemalloc)"],
        )
        print("RSS growth samples (MiB):", [round(s / 2**20, 1) for s in memory["samples"]])
    finally:
        for w in workers.values():
            w.close()
    with tempfile.TemporaryDirectory() as tmp:
        result = report_benchmark(20_000 if quick else REPORT_RECORDS, Path(tmp))
    rows = [
        [
            f"{result['records']:,}",
            f"{result['seconds']:.1f} s",
            f"{result['records'] / result['seconds']:,.0f}",
            f"{result['peak_rss'] / 2**20:.0f} MiB",
        ]
    ]
    print_table("depstrace report", rows, ["request records", "wall", "records/s", "peak RSS"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
