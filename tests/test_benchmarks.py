"""benchmarks/run.py: the quick mode runs end to end and prints every table (never its timings)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).parent.parent / "benchmarks" / "run.py"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_quick_run_prints_its_tables() -> None:
    """``run.py --quick`` exits 0 and prints each table, every variant, the reference
    app's 12 nodes and the disabled variant's "nothing patched"; uvicorn under wrk at
    concurrency 1 and 32 where wrk is installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPSTRACE")}
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    titles = [line for line in out.splitlines() if line.startswith("## ")]
    uvicorn = [
        "## uvicorn on 127.0.0.1 under wrk, reference endpoint (1 x 1 s per cell): "
        "requests/s, median latency, time per request to 'none'"
    ]
    if shutil.which("wrk") is None:  # .ci/run installs it
        assert "uvicorn under load: skipped, wrk is not installed (apt install wrk)" in out
        uvicorn = []
    assert titles == [
        "## Latency per request, us (median, min-max over rounds)",
        "## Ratio to the uninstrumented app",
        "## Cost per extra Depends node and per statement, us (slopes, ASGI driver)",
        *uvicorn,
        "## Memory, reference endpoint",
        "## depstrace report",
    ]
    if uvicorn:
        rows = [line.split("  ")[0] for line in out.splitlines() if line.startswith("uvicorn c=")]
        assert rows == ["uvicorn c=1", "uvicorn c=32"]
    header = next(line for line in out.splitlines() if line.startswith("driver  scenario"))
    optional = [
        variant
        for variant, module in (("fastapi-telemetry", "fastapi.telemetry"), ("logfire", "logfire"))
        if _importable(module)
    ]
    assert header.split() == [
        "driver",
        "scenario",
        "none",
        "disabled",
        "depstrace",
        "depstrace+spans",
        "otel",
        *optional,
    ]
    rows = {
        tuple(line.split()[:2]) for line in out.splitlines() if line.startswith(("asgi", "httpx"))
    }
    for scenario in ("reference", "trivial", "chain1", "chain128", "statements33"):
        assert ("asgi", scenario) in rows
    assert "reference endpoint: 12 dependency nodes as depstrace records them" in out
    assert "disabled: nothing patched = True" in out


def test_generated_suite_runs_both_ways_and_prints_its_table() -> None:
    """``suite.py`` generates a FastAPI suite, runs it untraced and with DEPSTRACE=1
    (both must pass, or it exits non-zero) and prints one row of wall times and ratio."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPSTRACE")}
    done = subprocess.run(
        [sys.executable, str(RUN.parent / "suite.py"), "--tests", "20", "--rounds", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "## Generated suite: 20 tests, 1 rounds (wall seconds)"
    assert lines[2].split() == ["untraced", "DEPSTRACE=1", "ratio"]
    assert lines[4].split()[-2].startswith("x")
