"""benchmarks/run.py: the quick mode runs end to end and prints every table (never its timings)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).parent.parent / "benchmarks" / "run.py"


def test_quick_run_prints_its_tables() -> None:
    """``run.py --quick`` exits 0 and prints each table, every variant, the reference
    app's 12 nodes and the disabled variant's "nothing patched"."""
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
    assert titles == [
        "## Latency per request, us (median, min-max over rounds)",
        "## Ratio to the uninstrumented app",
        "## Cost per extra Depends node and per statement, us (slopes, ASGI driver)",
        "## Memory, reference endpoint",
        "## depstrace report",
    ]
    header = next(line for line in out.splitlines() if line.startswith("driver  scenario"))
    assert header.split() == [
        "driver",
        "scenario",
        "none",
        "disabled",
        "depstrace",
        "depstrace+spans",
        "otel",
    ]
    rows = {
        tuple(line.split()[:2]) for line in out.splitlines() if line.startswith(("asgi", "httpx"))
    }
    for scenario in ("reference", "trivial", "chain1", "chain128", "statements33"):
        assert ("asgi", scenario) in rows
    assert "reference endpoint: 12 dependency nodes as depstrace records them" in out
    assert "disabled: nothing patched = True" in out
