"""Cost of the guard per statement: prints timings and Python calls, asserts nothing.

SELECTs on a SQLite file that is *not* a test database (the guard's slowest path
that lets a statement through: the rule is known, the statement is classified),
outside any request, untraced, traced with the guard off, and with ``writes``
and ``all`` (``all`` with an ``allow_db`` around it, so the statements pass).
Timings on a shared machine are noisy; the count of Python function calls per
statement (``sys.setprofile``) is exact: with the guard off it is the count of a
build without the guard.

    .venv/bin/python benchmarks/guard.py [statements]
"""

import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

import depstrace


def per_statement(engine: sa.Engine, count: int) -> float:
    """Best of 5 runs, microseconds per ``SELECT 1``."""
    runs = []
    with engine.connect() as conn:
        statement = sa.text("SELECT 1")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(count):
                conn.execute(statement)
            runs.append((time.perf_counter() - started) / count * 1e6)
    return min(runs)


def calls_per_statement(engine: sa.Engine, count: int = 1000) -> float:
    """Python function calls per ``SELECT 1`` (exact, unlike timings)."""
    calls = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event == "call"

    with engine.connect() as conn:
        statement = sa.text("SELECT 1")
        conn.execute(statement)
        sys.setprofile(profile)
        for _ in range(count):
            conn.execute(statement)
        sys.setprofile(None)
    return calls / count


def main(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="depstrace-bench-") as directory:
        engine = sa.create_engine(f"sqlite:///{Path(directory) / 'prod.db'}")
        results = {"untraced": (per_statement(engine, count), calls_per_statement(engine))}
        for mode in ("off", "writes", "all"):
            depstrace.instrument(trace_file=None, guard=mode)
            name = f"guard={mode}" + (" (allowed)" if mode == "all" else "")
            with depstrace.allow_db("prod.db") if mode == "all" else contextlib.nullcontext():
                results[name] = (per_statement(engine, count), calls_per_statement(engine))
            depstrace.uninstrument()
        base = results["guard=off"][0]
        for name, (value, calls) in results.items():
            print(
                f"{name:20} {value:7.2f} us/statement ({value / base:4.2f}x guard=off), "
                f"{calls:5.1f} Python calls/statement"
            )
        print(f"median time: {statistics.median(v for v, _ in results.values()):.2f} us")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
