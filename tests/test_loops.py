"""LOOP_MISMATCH only where it is real: which async drivers bind a connection to its loop.

Each suite below is the common shape of the bug: one module-level async engine
with its default pool, and tests that each run ``with TestClient(app)`` (a new
event loop per block).  For every driver in ``LOOP_BOUND_DRIVERS`` the suite is
run twice, without depstrace (the driver's own failure, reproduced for real)
and with it (the same outcome, plus LOOP_MISMATCH).  For the async drivers whose
connections work from any loop, the same suite passes and nothing fires.
"""

from __future__ import annotations

import re

import pytest

from depstrace._jsonl import read_records
from depstrace.sqlalchemy import LOOP_BOUND_DRIVERS

APP = """
import os
from typing import Annotated, AsyncIterator

from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

engine = create_async_engine(os.environ["LOOP_DB_URL"])  # one pool for the whole run
SessionLocal = async_sessionmaker(engine)


async def get_db() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


app = FastAPI()


@app.get("/one")
async def one(db: Annotated[AsyncSession, Depends(get_db)]) -> int:
    return (await db.execute(text("SELECT 1"))).scalar_one()
"""

TESTS = """
import pytest
from fastapi.testclient import TestClient

from app import app


@pytest.mark.parametrize("n", range({count}))
def test_one(n):
    with TestClient(app) as client:  # a new event loop for every block
        assert client.get("/one").json() == 1
"""

# What the loop-bound drivers raise when a connection is used from another loop.
DRIVER_FAILURE = re.compile(
    r"attached to a different loop|another operation is in progress|Event loop is closed"
)


def run_suite(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    *,
    count: int,
    traced: bool,
) -> tuple[pytest.RunResult, list[tuple[str, str | None, str | None, str]]]:
    """Run the suite on ``url`` in a subprocess; return the result and the findings
    (code, test, path, message) of its trace (none when not traced)."""
    monkeypatch.setenv("LOOP_DB_URL", url)
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB"):
        monkeypatch.delenv(name, raising=False)
    if traced:
        monkeypatch.setenv("DEPSTRACE", "1")
    pytester.makepyfile(app=APP, test_loops=TESTS.format(count=count))
    pytester.makeini("[pytest]\npythonpath = .\n")
    trace = pytester.path / ".depstrace" / "trace.jsonl"
    trace.unlink(missing_ok=True)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    findings: list[tuple[str, str | None, str | None, str]] = []
    for record in read_records(trace) if traced else []:
        if record["type"] == "request":
            findings += [
                (f["code"], record["test"], record["path"], f["message"])
                for f in record["findings"]
            ]
        elif record["type"] == "finding":
            findings.append((record["code"], record.get("test"), None, record["message"]))
    return result, findings


def _loop_bound_urls(request: pytest.FixtureRequest) -> dict[str, str]:
    postgres: dict[str, str] = request.getfixturevalue("postgres")
    mysql: str = request.getfixturevalue("mysql")
    return {
        "asyncpg": postgres["asyncpg_test"],
        "aiomysql": f"mysql+aiomysql://{mysql}",
        "asyncmy": f"mysql+asyncmy://{mysql}",
    }


def test_the_allow_list_is_the_tested_list() -> None:
    """Every driver LOOP_MISMATCH judges has its reproduction below, and no other."""
    assert {"asyncpg", "aiomysql", "asyncmy"} == LOOP_BOUND_DRIVERS


@pytest.mark.parametrize(
    "driver",
    [
        pytest.param("asyncpg", marks=pytest.mark.postgres),
        pytest.param("aiomysql", marks=pytest.mark.mysql),
        pytest.param("asyncmy", marks=pytest.mark.mysql),
    ],
)
def test_loop_bound_driver_fails_for_real_and_is_flagged(
    driver: str,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """Without depstrace the second loop's test fails with the driver's own error; with
    depstrace it fails the same way and its request carries LOOP_MISMATCH."""
    url = _loop_bound_urls(request)[driver]
    plain, none = run_suite(pytester, monkeypatch, url, count=2, traced=False)
    plain.assert_outcomes(passed=1, failed=1)
    plain.stdout.fnmatch_lines(["FAILED test_loops.py::test_one[[]1[]] - *"])
    assert DRIVER_FAILURE.search(plain.stdout.str()), plain.stdout.str()
    assert none == []

    traced, findings = run_suite(pytester, monkeypatch, url, count=2, traced=True)
    traced.assert_outcomes(passed=1, failed=1)
    assert DRIVER_FAILURE.search(traced.stdout.str())
    assert [f[:3] for f in findings] == [("LOOP_MISMATCH", "test_loops.py::test_one[1]", "/one")]
    assert re.fullmatch(
        rf"GET /one: engine e1 \({re.escape(url)}, created at app.py:8 during import\): a "
        rf"pooled {driver} connection created on event loop \w+@[0-9a-f]+ was checked out "
        r"on event loop \w+@[0-9a-f]+\. That driver binds a connection to the loop that "
        "opened it; expect 'attached to a different loop', 'another operation is in "
        "progress' or 'Event loop is closed'",
        findings[0][3],
    ), findings[0][3]
    assert "LOOP_MISMATCH" in traced.stdout.str()  # the account names it


@pytest.mark.parametrize(
    "driver", ["aiosqlite", pytest.param("psycopg", marks=pytest.mark.postgres)]
)
def test_drivers_not_bound_to_a_loop_pass_and_stay_silent(
    driver: str,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """aiosqlite and psycopg's async connections work from every TestClient loop: four
    loops, one pooled connection, all tests pass with and without depstrace, no finding."""
    if driver == "aiosqlite":
        url = f"sqlite+aiosqlite:///{pytester.path / 'test_app.db'}"
    else:
        url = request.getfixturevalue("postgres")["psycopg_test"]
    plain, _ = run_suite(pytester, monkeypatch, url, count=4, traced=False)
    plain.assert_outcomes(passed=4)
    traced, findings = run_suite(pytester, monkeypatch, url, count=4, traced=True)
    traced.assert_outcomes(passed=4)
    assert findings == []
    assert "LOOP_MISMATCH" not in traced.stdout.str()
