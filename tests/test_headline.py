"""The account's first line calls a run clean only when databases were seen and no
error-severity finding exists (report.headline, report.verdict), live and read back."""

from __future__ import annotations

from typing import Any

import pytest

from depstrace.cli import main
from depstrace.report import headline, verdict


def request(test: str | None, *databases: bool, findings: tuple[str, ...] = ()) -> dict[str, Any]:
    """A request record with one database per ``is_test`` flag and findings as CODE:severity."""
    return {
        "test": test,
        "databases": [{"is_test": flag} for flag in databases],
        "findings": [
            {"code": code, "severity": severity}
            for code, severity in (item.split(":") for item in findings)
        ],
    }


def finding(code: str, severity: str) -> dict[str, Any]:
    """A finding record tied to no request."""
    return {"type": "finding", "code": code, "severity": severity}


@pytest.mark.parametrize(
    ("requests", "run_findings", "damaged", "expected", "status"),
    [
        ([], [], False, "depstrace: no requests recorded.", 3),
        (
            [],
            [finding("DB_OUTSIDE_REQUEST", "error")],
            False,
            "depstrace: no requests recorded, but 1 error finding (DB_OUTSIDE_REQUEST) below.",
            1,
        ),
        (
            [request("t::a"), request("t::b"), request("t::b")],
            [],
            False,
            "depstrace: 3 requests in 2 tests, none reached a database depstrace can observe.",
            3,
        ),
        (
            [request("t::a", True), request("t::b")],
            [],
            False,
            "depstrace: 2 requests in 2 tests, all on test databases.",
            0,
        ),
        (
            [request("t::a", True, findings=("OVERRIDE_LEAKED:error",)), request("t::b", True)],
            [finding("OVERRIDE_UNUSED", "warning")],
            False,
            "depstrace: 2 requests in 2 tests, all on test databases, but 1 error finding "
            "(OVERRIDE_LEAKED) below.",
            1,
        ),
        (
            [request("t::a", True, findings=("DUPLICATE_SESSION:warning",))],
            [finding("OVERRIDE_UNUSED", "warning")],
            False,
            "depstrace: 1 request in 1 test, all on test databases; 2 warnings "
            "(DUPLICATE_SESSION, OVERRIDE_UNUSED) below.",
            0,
        ),
        (
            [request("t::a", True)],
            [],
            True,
            "depstrace: 1 request in 1 test, all on test databases, but an incomplete trace below.",
            2,
        ),
        (
            [request("t::a", True, findings=("SESSION_NOT_COMMITTED:error",))],
            [finding("DB_OUTSIDE_REQUEST", "error"), finding("DB_OUTSIDE_REQUEST", "error")],
            True,
            "depstrace: 1 request in 1 test, all on test databases, but 3 error findings "
            "(SESSION_NOT_COMMITTED, DB_OUTSIDE_REQUEST) and an incomplete trace below.",
            1,
        ),
        (
            [request(None, False, findings=("WRONG_DB:error",)), request(None, True)],
            [],
            True,
            "depstrace: 1 of 2 requests reached a non-test database.",
            1,
        ),
        (
            [request("t::a", False, True), request("t::b", True)],
            [],
            False,
            "depstrace: 1 of 2 requests reached a non-test database, in 1 test.",
            1,
        ),
        (
            [request(None, True), request(None)],
            [],
            False,
            "depstrace: 2 requests, all on test databases.",
            0,
        ),
    ],
)
def test_headline_says_what_was_seen(
    requests: list[dict[str, Any]],
    run_findings: list[dict[str, Any]],
    damaged: bool,
    expected: str,
    status: int,
) -> None:
    """Each kind of run gets the headline and the exit status it deserves."""
    judged = verdict(requests, run_findings, damaged=damaged)
    assert (headline(judged), judged.status) == (expected, status)


def test_headline_names_the_trace() -> None:
    """The trace file follows the sentence."""
    judged = verdict([request("t::a", True)])
    assert headline(judged, "t.jsonl") == (
        "depstrace: 1 request in 1 test, all on test databases. Trace: t.jsonl"
    )


LEAK_APP = """
import os
from typing import Annotated, Iterator

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session

data = os.environ["SCENARIO_DATA"]
engine = sa.create_engine(f"sqlite:///{data}/prod.db")
test_engine = sa.create_engine(f"sqlite:///{data}/test.db")


def get_db() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


def get_test_db() -> Iterator[Session]:
    with Session(test_engine) as session:
        yield session


app = FastAPI()


@app.get("/items")
def items(db: Annotated[Session, Depends(get_db)]) -> int:
    return len(db.execute(sa.text("SELECT 1")).all())
"""

LEAK_TESTS = """
from fastapi.testclient import TestClient

from app import app, get_db, get_test_db

client = TestClient(app)


def test_first():
    app.dependency_overrides[get_db] = get_test_db  # set in the body, never removed
    assert client.get("/items").json() == 1


def test_second():  # served by test_first's override: right database, by accident
    assert client.get("/items").json() == 1
"""


def test_error_finding_on_test_databases_is_not_clean(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A leaked override serving a later test on the test database is an error the headline
    names, in the terminal and in depstrace report (exit 1)."""
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("COLUMNS", "1000")  # the headline on one line, however long the path
    monkeypatch.setenv("SCENARIO_DATA", str(pytester.path))
    monkeypatch.delenv("DEPSTRACE_FILE", raising=False)
    pytester.makepyfile(app=LEAK_APP, test_leak=LEAK_TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    trace = pytester.path / ".depstrace" / "trace.jsonl"
    said = (
        "depstrace: 2 requests in 2 tests, all on test databases, but 1 error finding "
        f"(OVERRIDE_LEAKED) below. Trace: {trace}"
    )
    result.stdout.fnmatch_lines(["*= depstrace =*", said])
    capsys.readouterr()
    assert main(["report", str(trace)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == said


NO_DATABASE_APP = """
from fastapi import FastAPI

app = FastAPI()
STORE: dict[str, str] = {}  # an in-memory store (mongomock, a dict): nothing depstrace sees


@app.put("/notes/{key}")
def put(key: str, text: str) -> str:
    STORE[key] = text
    return text


@app.get("/notes/{key}")
def get(key: str) -> str:
    return STORE[key]
"""

NO_DATABASE_TESTS = """
from fastapi.testclient import TestClient

from app import app

client = TestClient(app)


def test_put():
    assert client.put("/notes/a", params={"text": "x"}).json() == "x"


def test_get():
    client.put("/notes/b", params={"text": "y"})
    assert client.get("/notes/b").json() == "y"


def test_nothing():
    pass
"""


def test_requests_that_reach_no_database_are_not_clean(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A suite whose only store depstrace cannot see is not called clean; report exits 3."""
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("COLUMNS", "1000")
    monkeypatch.delenv("DEPSTRACE_FILE", raising=False)
    pytester.makepyfile(app=NO_DATABASE_APP, test_notes=NO_DATABASE_TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    trace = pytester.path / ".depstrace" / "trace.jsonl"
    said = (
        "depstrace: 3 requests in 2 tests, none reached a database depstrace can observe. "
        f"Trace: {trace}"
    )
    result.stdout.fnmatch_lines(["*= depstrace =*", said])
    capsys.readouterr()
    assert main(["report", str(trace)]) == 3
    assert capsys.readouterr().out.splitlines() == [said]

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "nothing")
    result.stdout.fnmatch_lines(
        ["*= depstrace =*", f"depstrace: no requests recorded. Trace: {trace}"]
    )
    assert main(["report", str(trace)]) == 3
