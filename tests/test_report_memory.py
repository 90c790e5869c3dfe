"""``depstrace report`` reads a 200 MB trace with flat memory (a memory assertion: peak
RSS of the report's process, never its time)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from report_traces import grow, make_trace

SIZE = 200 * 1024 * 1024
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
    assert grow(small, big, size=SIZE) > 50_000
    return small, big


@pytest.mark.parametrize(
    "args",
    [[], ["--format", "json"], ["--format", "html", "-o", "/dev/null"]],
    ids=["text", "json", "html"],
)
def test_200_mb_trace_in_flat_memory(traces: tuple[Path, Path], args: list[str]) -> None:
    """The report of a 200 MB trace (one request in 20 offending) peaks within HEADROOM_MB of the 5-request trace's."""
    small, big = traces
    status_small, small_mb = peak(str(small), *args)
    status_big, big_mb = peak(str(big), *args)
    assert (status_small, status_big) == (1, 1)
    assert big_mb < small_mb + HEADROOM_MB, f"{big_mb:.0f} MB vs {small_mb:.0f} MB"
