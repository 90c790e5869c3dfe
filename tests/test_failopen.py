"""Fail open: depstrace's own faults cost one warning, never a test's outcome.

A trace file that cannot be opened or written, an internal error while a test
runs, a fault while starting or while printing the account: the suite below
ends exactly as it does untraced, and the account says what went wrong once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from depstrace import _failopen
from depstrace._jsonl import JsonlWriter, read_records
from depstrace.report import summary_lines

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc and /dev/full are Linux's")

APP = """
import os
from typing import Annotated, Iterator

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session

engine = sa.create_engine(f"sqlite:///{os.environ['SCENARIO_DATA']}/test_app.db")


def get_db() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


app = FastAPI(title="failopen")


@app.get("/items/{n}")
def item(n: int, db: Annotated[Session, Depends(get_db)]) -> int:
    return db.execute(sa.text("SELECT :n"), {"n": n}).scalar_one()
"""

# Enough requests to fill the writer's buffer inside a test (so /dev/full fails
# mid-test, not only at the flush after it), a test that asserts no log record
# appeared, a failing test and an xfail: each must end as it does untraced.
TESTS = """
import logging

import pytest
from fastapi.testclient import TestClient

from app import app


@pytest.fixture
def client():
    with TestClient(app) as client:
        yield client


def test_many_requests_and_no_warning_logged(client, caplog):
    caplog.set_level(logging.WARNING)
    for n in range(300):
        assert client.get(f"/items/{n}").json() == n
    assert caplog.records == []


def test_one_more(client):
    assert client.get("/items/7").json() == 7


def test_fails(client):
    assert client.get("/items/1").json() == 2


@pytest.mark.xfail(strict=True)
def test_expected_failure(client):
    assert client.get("/items/1").json() == 3
"""

OUTCOMES = {"passed": 2, "failed": 1, "xfailed": 1}


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The app and its tests in a pytester directory; depstrace variables cleared."""
    data = pytester.path / "data"
    data.mkdir()
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.setenv("COLUMNS", "1000")  # unwrapped, to match whole lines
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB", "DEPSTRACE_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(app=APP, test_app=TESTS)
    # filterwarnings = error, as in many projects: a warning depstrace raised would
    # become an error in the test that triggered it.
    pytester.makeini(
        "[pytest]\npythonpath = .\nfilterwarnings =\n    error\n"
        "    ignore:Using `httpx` with `starlette.testclient`:UserWarning\n"
        # FastAPI 0.104's Starlette passes app= to httpx 0.27 (CI's oldest matrix row),
        # and its anyio alias is deprecated: the same exceptions as pyproject.toml's.
        "    ignore:The 'app' shortcut is now deprecated:DeprecationWarning\n"
        "    ignore:The anyio.abc.BlockingPortal alias is deprecated:DeprecationWarning\n"
    )
    return pytester


def depstrace_section(result: pytest.RunResult) -> list[str]:
    """The lines of the terminal summary's depstrace section."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "= depstrace =" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("="))
    return lines[start + 1 : end]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        pytest.param(
            "/proc/nonexistent/x.jsonl",
            "depstrace: no trace file: cannot open /proc/nonexistent/x.jsonl: "
            "No such file or directory (ENOENT); tracing continues in memory.",
            id="missing-directory",
        ),
        pytest.param(
            "/dev/full",
            "depstrace: the trace file /dev/full is incomplete: writing it failed: "
            "No space left on device (ENOSPC); tracing continues in memory.",
            id="full-disk",
        ),
        pytest.param(
            "{tmp}/app.py/trace.jsonl",
            "depstrace: no trace file: cannot open {tmp}/app.py/trace.jsonl: "
            "{tmp}/app.py is a file, not a directory; tracing continues in memory.",
            id="parent-is-a-file",
        ),
        pytest.param(
            "{tmp}/data",
            "depstrace: no trace file: cannot open {tmp}/data: Is a directory (EISDIR); "
            "name a file such as {tmp}/data/trace.jsonl; tracing continues in memory.",
            id="a-directory",
        ),
    ],
)
def test_unwritable_trace_file_costs_one_warning(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, target: str, message: str
) -> None:
    """Every test ends as it does untraced; the account is complete and its last line
    says, once, why the trace file is missing or incomplete."""
    untraced = suite.runpytest_subprocess("-p", "no:cacheprovider")
    untraced.assert_outcomes(**OUTCOMES)
    tmp = str(suite.path)
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("DEPSTRACE_FILE", target.format(tmp=tmp))
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(**OUTCOMES)
    assert result.ret == untraced.ret == pytest.ExitCode.TESTS_FAILED
    assert depstrace_section(result) == [
        "depstrace: 303 requests in 4 tests, all on test databases.",
        message.format(tmp=tmp),
    ]
    output = result.stdout.str() + result.stderr.str()
    assert output.count(message.format(tmp=tmp)) == 1


def test_writable_trace_file_is_named_in_the_account(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same suite with a writable file: no warning, the file holds every request."""
    monkeypatch.setenv("DEPSTRACE", "1")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(**OUTCOMES)
    trace = suite.path / ".depstrace" / "trace.jsonl"
    assert depstrace_section(result) == [
        f"depstrace: 303 requests in 4 tests, all on test databases. Trace: {trace}"
    ]
    assert sum(r["type"] == "request" for r in read_records(trace)) == 303


SABOTAGE = """
# Loaded at interpreter start (sitecustomize): DEPSTRACE_SABOTAGE="module:Class.method"
# or "module.function" names the depstrace function replaced by one that raises.
import importlib
import os

target = os.environ.get("DEPSTRACE_SABOTAGE")
if target:
    path, _, attribute = target.rpartition(".")
    module_name, _, class_name = path.partition(":")
    holder = importlib.import_module(module_name)
    if class_name:
        holder = getattr(holder, class_name)

    def broken(*args, **kwargs):
        raise RuntimeError("sabotaged: postgresql://app:s3cret@db/prod")

    setattr(holder, attribute, broken)
"""


# sitecustomize imports depstrace before pytest can rewrite its asserts; pytest says so.
SABOTAGE_ARGS = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


@pytest.fixture
def sabotage(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The suite, with a sitecustomize that replaces ``DEPSTRACE_SABOTAGE`` by a function
    that raises (its message holds a password, which must never be shown)."""
    site = suite.path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SABOTAGE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("DEPSTRACE", "1")
    return suite


def test_internal_error_during_tests_reaches_no_test(
    sabotage: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An internal error at every request's close: no log record reaches any test's
    caplog, outcomes are unchanged, and the account says what failed, once."""
    monkeypatch.setenv("DEPSTRACE_SABOTAGE", "depstrace._session:TraceSession.close_request")
    result = sabotage.runpytest_subprocess(*SABOTAGE_ARGS)
    result.assert_outcomes(**OUTCOMES)
    section = depstrace_section(result)
    assert section[-2:] == [
        "depstrace hit 303 internal error(s); the trace may be incomplete:",
        "depstrace internal error in middleware (close) (tracing continues, this request's "
        "record may be incomplete): RuntimeError: sabotaged: postgresql://app:***@db/prod",
    ]
    assert "s3cret" not in result.stdout.str() + result.stderr.str()


def test_fault_while_starting_leaves_the_run_untraced(
    sabotage: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """instrument() failing inside depstrace: pytest runs every test untraced and says why."""
    monkeypatch.setenv("DEPSTRACE_SABOTAGE", "depstrace._instrument.TraceSession")
    result = sabotage.runpytest_subprocess(*SABOTAGE_ARGS)
    result.assert_outcomes(**OUTCOMES)
    assert depstrace_section(result) == [
        "depstrace: tracing is off for this run: it could not start: RuntimeError: "
        "sabotaged: postgresql://app:***@db/prod"
    ]
    assert not (sabotage.path / ".depstrace").exists()


def test_fault_while_printing_the_account_keeps_the_exit_status(
    sabotage: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account itself failing costs one line; pytest's exit status is the tests'."""
    monkeypatch.setenv("DEPSTRACE_SABOTAGE", "depstrace.report.summary_lines")
    result = sabotage.runpytest_subprocess(*SABOTAGE_ARGS)
    result.assert_outcomes(**OUTCOMES)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert depstrace_section(result) == [
        "depstrace: no account: RuntimeError: sabotaged: postgresql://app:***@db/prod"
    ]


def test_fault_in_the_flush_after_a_test_is_no_teardown_error(
    sabotage: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush after each test (and before the account) raising is counted, never a
    teardown error."""
    monkeypatch.setenv("DEPSTRACE_SABOTAGE", "depstrace._session:TraceSession.flush")
    result = sabotage.runpytest_subprocess(*SABOTAGE_ARGS)
    result.assert_outcomes(**OUTCOMES)
    assert depstrace_section(result)[-2:] == [
        "depstrace hit 5 internal error(s); the trace may be incomplete:",
        "depstrace internal error in flushing the trace file (tracing continues, this "
        "request's record may be incomplete): RuntimeError: sabotaged: postgresql://app:***@db/prod",
    ]


# -- the writer ---------------------------------------------------------------------------


def test_writer_keeps_what_it_wrote_before_the_disk_filled(tmp_path: Path) -> None:
    """A write error stops the file at the last whole flush; later writes are dropped
    without raising, and the error is said once."""
    _failopen.reset()
    writer = JsonlWriter(Path("/dev/full"))
    assert writer.error is None  # opening /dev/full works; writing does not
    for n in range(2000):
        writer.write({"type": "request", "n": n})
    writer.flush()
    writer.close()
    writer.write({"type": "late"})
    assert writer.error == (
        "the trace file /dev/full is incomplete: writing it failed: "
        "No space left on device (ENOSPC)"
    )
    assert _failopen.warnings == [f"depstrace: {writer.error}; tracing continues in memory."]
    _failopen.reset()


def test_writer_drops_one_record_it_cannot_encode(tmp_path: Path) -> None:
    """A record that cannot be encoded is an internal error; the others are written,
    and a lone surrogate (an undecodable file name) stays valid JSON."""
    _failopen.reset()
    path = tmp_path / "trace.jsonl"
    writer = JsonlWriter(path)
    circular: dict[str, object] = {"type": "request"}
    circular["self"] = circular
    writer.write({"type": "session", "file": "caf\udce9.py"})
    writer.write(circular)
    writer.write({"type": "summary"})
    writer.close()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"type": "session", "file": "caf\udce9.py"},
        {"type": "summary"},
    ]
    assert dict(_failopen.internal_errors) == {"trace file (encoding a request record)": 1}
    _failopen.reset()


def test_account_lists_warnings_after_the_internal_error_count() -> None:
    """summary_lines ends with the count of internal errors and each warning once."""
    lines = summary_lines(
        [], trace_file=None, internal_errors=2, warnings=["depstrace: one", "depstrace: two"]
    )
    assert lines == [
        "depstrace: no requests recorded.",
        "depstrace hit 2 internal error(s); the trace may be incomplete:",
        "depstrace: one",
        "depstrace: two",
    ]


# -- the launcher ----------------------------------------------------------------------------

LAUNCHED = """
import subprocess, sys, warnings

warnings.simplefilter("ignore")
from fastapi.testclient import TestClient

from app import app

with TestClient(app) as client:
    print(client.get("/items/3").json())
if len(sys.argv) > 1:  # a traced child process too: its own file, opened lazily
    child = "from fastapi.testclient import TestClient; from app import app; print(TestClient(app).get('/items/4').json())"
    print(subprocess.run([sys.executable, "-W", "ignore", "-c", child], capture_output=True, text=True, check=True).stdout.strip())
"""


@pytest.mark.parametrize(
    ("target", "error", "argv"),
    [
        pytest.param(
            "/proc/nonexistent/x.jsonl",
            "no trace file: cannot open /proc/nonexistent/x.jsonl: "
            "No such file or directory (ENOENT)",
            ["child"],
            id="missing-directory",
        ),
        pytest.param(  # no child here: its file would be /dev/full-<pid>
            "/dev/full",
            "the trace file /dev/full is incomplete: writing it failed: "
            "No space left on device (ENOSPC)",
            [],
            id="full-disk",
        ),
    ],
)
def test_launcher_with_an_unwritable_trace_file(
    tmp_path: Path, target: str, error: str, argv: list[str]
) -> None:
    """``depstrace run`` with a file it cannot write: the program and its traced child run
    as untraced, the warning comes when it happens, and the account repeats it."""
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "main.py").write_text(LAUNCHED)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPSTRACE")}
    env.pop("PYTHONPATH", None)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DEPSTRACE_FILE=target,
        SCENARIO_DATA=str(data),
    )
    result = subprocess.run(
        [sys.executable, "-m", "depstrace", "run", "--", "python", "main.py", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "3\n4\n" if argv else "3\n")
    warning = f"depstrace: {error}; tracing continues in memory."
    lines = result.stderr.splitlines()
    headline = "depstrace: 1 request, all on test databases."
    assert lines[lines.index(headline) :] == [headline, warning]
    assert lines.count(warning) == 2  # when it happened, and in the account
