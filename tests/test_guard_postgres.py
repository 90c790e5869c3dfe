"""Guard mode on the real PostgreSQL server: sync and async SQLAlchemy, asyncpg and
psycopg used directly.  The refused INSERTs never reach ``depstrace_prod`` (counted
afterwards), reads pass, ``allow_db`` lets a write land, and a fixture that creates
and drops a database per test is never refused."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import PG_HOST, PG_PORT, PG_USER
from test_transaction_control import APP as TC_APP
from test_transaction_control import ITEM_TESTS, PER_TEST_DATABASE

from depstrace._jsonl import read_records

pytestmark = pytest.mark.postgres

APP = """
import os

import asyncpg
import psycopg
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

PG = os.environ["G_PG"]
USER, _, ADDRESS = PG.partition("@")
HOST, _, PORT = ADDRESS.partition(":")
sync_engine = sa.create_engine(f"postgresql+psycopg://{PG}/depstrace_prod")
async_engine = create_async_engine(f"postgresql+asyncpg://{PG}/depstrace_prod", poolclass=NullPool)
app = FastAPI()


@app.post("/sync-sqlalchemy/{note}")
def sync_sqlalchemy(note: str) -> str:
    with sync_engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO guard_orders VALUES (:note)"), {"note": note})
    return note


@app.get("/sync-sqlalchemy")
def sync_sqlalchemy_count() -> int:
    with sync_engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM guard_orders")).scalar_one()


@app.post("/async-sqlalchemy/{note}")
async def async_sqlalchemy(note: str) -> str:
    async with async_engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO guard_orders VALUES (:note)"), {"note": note})
    return note


@app.get("/async-sqlalchemy")
async def async_sqlalchemy_count() -> int:
    async with async_engine.connect() as conn:
        return (await conn.execute(sa.text("SELECT count(*) FROM guard_orders"))).scalar_one()


async def _asyncpg():
    return await asyncpg.connect(host=HOST, port=int(PORT), user=USER, database="depstrace_prod")


@app.post("/asyncpg/{note}")
async def raw_asyncpg(note: str) -> str:
    conn = await _asyncpg()
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO guard_orders VALUES ($1)", note)
    finally:
        await conn.close()
    return note


@app.get("/asyncpg")
async def raw_asyncpg_count() -> int:
    conn = await _asyncpg()
    try:
        return await conn.fetchval("SELECT count(*) FROM guard_orders")
    finally:
        await conn.close()


def _psycopg():
    return psycopg.connect(host=HOST, port=int(PORT), user=USER, dbname="depstrace_prod")


@app.post("/psycopg/{note}")
def raw_psycopg(note: str) -> str:
    with _psycopg() as conn:
        conn.execute("INSERT INTO guard_orders VALUES (%s)", (note,))
    return note


@app.get("/psycopg")
def raw_psycopg_count() -> int:
    with _psycopg() as conn:
        return conn.execute("SELECT count(*) FROM guard_orders").fetchone()[0]
"""

TESTS = """
import pytest
from fastapi.testclient import TestClient

import depstrace
from app import app

DRIVERS = ["sync-sqlalchemy", "async-sqlalchemy", "asyncpg", "psycopg"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_write_is_refused(driver):
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post(f"/{driver}/refused").status_code == 500


@pytest.mark.parametrize("driver", DRIVERS)
def test_read_passes(driver):
    with TestClient(app) as client:
        assert client.get(f"/{driver}").json() == 0


@pytest.mark.parametrize("driver", DRIVERS)
def test_allow_db_lets_the_write_land(driver):
    with depstrace.allow_db("depstrace_prod"), TestClient(app) as client:
        assert client.post(f"/{driver}/allowed").json() == "allowed"
"""


@pytest.fixture
def pg(postgres: dict[str, str]) -> str:
    """``user@host:port`` of the real server, with an empty ``guard_orders`` table in
    ``depstrace_prod``."""
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="depstrace_prod") as conn:
        conn.execute("DROP TABLE IF EXISTS guard_orders")
        conn.execute("CREATE TABLE guard_orders (note TEXT)")
    return f"{PG_USER}@{PG_HOST}:{PG_PORT}"


def _notes() -> list[str]:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="depstrace_prod") as conn:
        return sorted(row[0] for row in conn.execute("SELECT note FROM guard_orders"))


def _run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **files: str
) -> tuple[pytest.RunResult, list[dict[str, Any]]]:
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB", "DEPSTRACE_GUARD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(**files)
    pytester.makeini("[pytest]\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    return result, list(read_records(pytester.path / ".depstrace" / "trace.jsonl"))


def test_every_driver_is_guarded(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pg: str
) -> None:
    """DEPSTRACE_GUARD=writes: each driver's INSERT is a 500 and never lands; its
    SELECT passes; inside allow_db its INSERT lands (one row per driver)."""
    result, trace = _run(
        pytester, monkeypatch, {"G_PG": pg, "DEPSTRACE_GUARD": "writes"}, app=APP, test_pg=TESTS
    )
    result.assert_outcomes(passed=12)
    assert _notes() == ["allowed"] * 4
    refused = [
        (r["request"]["path"], r["operation"], r["table"], r["url"].partition("://")[0])
        for r in trace
        if r["type"] == "guard" and r["action"] == "refused"
    ]
    assert refused == [
        ("/sync-sqlalchemy/refused", "INSERT", "guard_orders", "postgresql+psycopg"),
        ("/async-sqlalchemy/refused", "INSERT", "guard_orders", "postgresql+asyncpg"),
        ("/asyncpg/refused", "INSERT", "guard_orders", "postgresql+asyncpg"),
        ("/psycopg/refused", "INSERT", "guard_orders", "postgresql+psycopg"),
    ]
    allowed = [r["operation"] for r in trace if r["type"] == "guard" and r["action"] == "allowed"]
    assert allowed == ["INSERT"] * 4
    result.stdout.fnmatch_lines(
        ["depstrace guard (DEPSTRACE_GUARD=writes): refused 4 statements on non-test databases:"]
    )


def test_all_mode_refuses_every_driver_s_read(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pg: str
) -> None:
    """DEPSTRACE_GUARD=all: the SELECT of each driver fails the test."""
    tests = TESTS.replace("def test_write_is_refused", "def _unused_write").replace(
        "def test_allow_db", "def _unused_allow"
    )
    result, trace = _run(
        pytester, monkeypatch, {"G_PG": pg, "DEPSTRACE_GUARD": "all"}, app=APP, test_pg=tests
    )
    result.assert_outcomes(failed=4)
    refused = {(r["operation"], r["table"]) for r in trace if r["type"] == "guard"}
    assert ("SELECT", "guard_orders") in refused


def test_per_test_database_fixture_is_never_refused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pg: str
) -> None:
    """CREATE/DROP DATABASE on the maintenance database after a bare COMMIT, and BEGIN,
    SAVEPOINT, RELEASE and COMMIT around a request's insert on the per-test database,
    all pass the guard in ``all`` mode: nothing is refused."""
    result, trace = _run(
        pytester,
        monkeypatch,
        {"TC_PG": pg, "DEPSTRACE_GUARD": "all"},
        app=TC_APP,
        conftest=PER_TEST_DATABASE,
        test_items=ITEM_TESTS,
    )
    result.assert_outcomes(passed=2)
    assert [r for r in trace if r["type"] == "guard"] == []
    result.stdout.fnmatch_lines(
        ["depstrace guard (DEPSTRACE_GUARD=all): refused 0 statements on non-test databases."]
    )


def test_asyncpg_commit_of_an_allowed_write_outside_the_allowance_is_refused(
    pg: str, tmp_path: Any
) -> None:
    """asyncpg sends a transaction's COMMIT as a statement: after a write allowed inside
    ``allow_db``, that COMMIT outside it is refused and the row never lands."""
    import asyncio

    import asyncpg

    import depstrace

    async def write() -> None:
        conn = await asyncpg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, database="depstrace_prod"
        )
        try:
            transaction = conn.transaction()
            await transaction.start()
            with depstrace.allow_db("depstrace_prod"):
                await conn.execute("INSERT INTO guard_orders VALUES ('allowed, not committed')")
            with pytest.raises(depstrace.GuardRefused, match="refused COMMIT of a transaction"):
                await transaction.commit()
        finally:
            await conn.close()

    depstrace.instrument(trace_file=tmp_path / "trace.jsonl", guard="writes")
    try:
        asyncio.run(write())
    finally:
        depstrace.uninstrument()
    assert _notes() == []
