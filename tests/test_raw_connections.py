"""Raw DBAPI connections and creator engines (docs/format.md, docs/guard.md).

``engine.raw_connection().cursor().execute(...)`` fires no SQLAlchemy statement event,
and ``create_engine("sqlite://", creator=...)`` has a URL that is not the database:
neither may make a run say "all on test databases" when it read a production file.
The "production" databases are real SQLite files outside pytest's temporary directories.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from depstrace._jsonl import read_records

APP = """
import os
import sqlite3

import sqlalchemy as sa
from fastapi import Depends, FastAPI

prod = sa.create_engine(os.environ["R_PROD"])
test_engine = sa.create_engine(os.environ["R_TEST"])
made = sa.create_engine(
    "sqlite://", creator=lambda: sqlite3.connect(os.environ["R_FILE"], check_same_thread=False)
)
app = FastAPI()


def get_conn():
    with test_engine.connect() as conn:
        yield conn


@app.get("/raw")
def raw() -> int:
    con = prod.raw_connection()
    try:
        cursor = con.cursor()
        cursor.execute("SELECT count(*) FROM orders")
        return cursor.fetchone()[0]
    finally:
        con.close()


@app.get("/raw-one")
def raw_one() -> int:
    con = prod.raw_connection()
    try:
        cursor = con.cursor()
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]
    finally:
        con.close()


@app.post("/raw")
def raw_write() -> str:
    con = prod.raw_connection()
    try:
        con.cursor().execute("INSERT INTO orders (note) VALUES ('raw')")
        con.commit()
        return "ok"
    finally:
        con.close()


@app.get("/creator")
def creator() -> int:
    with made.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()


@app.get("/orm")
def orm(conn=Depends(get_conn)) -> int:
    return conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
"""

TESTS = """
from fastapi.testclient import TestClient

from app import app, prod


def test_get(tmp_path, monkeypatch, path="/{path}"):
    if {in_tmp}:  # the creator reads R_FILE when it connects
        import sqlite3
        from contextlib import closing

        scratch = tmp_path / "scratch.db"
        with closing(sqlite3.connect(scratch)) as conn, conn:
            conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        monkeypatch.setenv("R_FILE", str(scratch))
    with TestClient(app) as client:
        assert client.request("{method}", path).status_code == 200
"""


FIXTURE_TESTS = """
import pytest

from app import prod


@pytest.fixture
def counted():
    con = prod.raw_connection()
    try:
        con.cursor().execute("SELECT count(*) FROM orders")
    finally:
        con.close()


def test_with_fixture(counted):
    pass
"""


def _db(path: Path) -> Path:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, note TEXT)")
    return path


def _run(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    prod_dir: Path,
    route: str,
    *,
    method: str = "GET",
    in_tmp: bool = False,
    guard: str | None = None,
    prod_url: str | None = None,
) -> tuple[pytest.RunResult, list[dict[str, Any]], Path]:
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB", "DEPSTRACE_GUARD"):
        monkeypatch.delenv(name, raising=False)
    prod = _db(prod_dir / "prod.db")
    test = _db(pytester.path / "shop_test.db")
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("R_PROD", prod_url or f"sqlite:///{prod}")
    monkeypatch.setenv("R_TEST", f"sqlite:///{test}")
    monkeypatch.setenv("R_FILE", os.fspath(prod))
    if guard is not None:
        monkeypatch.setenv("DEPSTRACE_GUARD", guard)
    tests = (
        FIXTURE_TESTS
        if route == "fixture"
        else TESTS.format(path=route, method=method, in_tmp=in_tmp)
    )
    pytester.makepyfile(app=APP, test_app=tests)
    pytester.makeini("[pytest]\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    trace = pytester.path / ".depstrace" / "trace.jsonl"
    return result, list(read_records(trace)) if trace.exists() else [], prod


def _databases(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [db for r in trace if r["type"] == "request" for db in r["databases"]]


def test_raw_connection_read_is_wrong_db(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """A request that reads the production file through raw_connection() records the
    engine (statements 0, one unobserved connection) and is WRONG_DB, not clean."""
    result, trace, prod = _run(pytester, monkeypatch, prod_dir, "raw")
    [db] = _databases(trace)
    assert (db["engine_id"], db["statements"], db["is_test"]) == ("e1", 0, False)
    assert db["unobserved_connections"] == 1
    assert db["url"] == f"sqlite:///{prod}"
    out = result.stdout.str()
    assert "all on test databases" not in out
    assert "depstrace: 1 of 1 requests reached a non-test database" in out
    [request] = [r for r in trace if r["type"] == "request"]
    found = {f["code"]: f["message"] for f in request["findings"]}
    assert set(found) >= {"WRONG_DB", "DI_BYPASS"}
    assert found["WRONG_DB"].startswith(
        f"GET /raw checked out 1 connection on sqlite:///{prod} (engine e1, "
    )
    assert found["WRONG_DB"].endswith(
        "it is not a test database. No statement was seen: statements on a raw DBAPI "
        "connection (engine.raw_connection(), pandas, COPY helpers) are not seen one by one, "
        "so what it read or wrote is unknown"
    )


def test_ordinary_request_is_recorded_as_before(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """A checkout followed by statements is counted by its statements only: no extra key,
    no second entry, the run is clean."""
    result, trace, _ = _run(pytester, monkeypatch, prod_dir, "orm")
    [db] = _databases(trace)
    assert (db["statements"], db["operations"], db["is_test"]) == (1, {"SELECT": 1}, True)
    assert "unobserved_connections" not in db
    result.stdout.fnmatch_lines(["depstrace: 1 request in 1 test, all on test databases.*"])
    assert result.ret == 0


def test_raw_connection_under_the_guard_is_refused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """DEPSTRACE_GUARD=writes refuses a raw_connection() on a non-test engine before the
    pool hands it out: the raw INSERT + commit never lands (the file is byte for byte
    what it was), and the message says why it cannot be guarded and how to allow it."""
    prod = _db(prod_dir / "prod.db")
    before = hashlib.sha256(prod.read_bytes()).hexdigest()
    result, trace, _ = _run(pytester, monkeypatch, prod_dir, "raw", method="POST", guard="writes")
    result.assert_outcomes(failed=1)
    assert hashlib.sha256(prod.read_bytes()).hexdigest() == before
    result.stdout.fnmatch_lines(
        [
            "E *GuardRefused: depstrace guard (DEPSTRACE_GUARD=writes) refused "
            f"engine.raw_connection() on sqlite:///{prod} (engine e1): it is not a test "
            "database by the default rule *, and a raw DBAPI connection to a non-test "
            "database cannot be guarded: statements on it bypass SQLAlchemy's events, so "
            "they are not seen one by one.",
            '*If this database must be touched on purpose: @pytest.mark.depstrace_allow_db("'
            'prod.db")*',
        ]
    )
    [refusal] = [r for r in trace if r["type"] == "guard"]
    assert (refusal["action"], refusal["operation"]) == ("refused", "RAW CONNECTION")
    [db] = _databases(trace)
    assert db["refused"] == {"RAW CONNECTION": 1}


@pytest.mark.parametrize("mode", ["writes", "all"])
def test_guard_lets_ordinary_connections_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path, mode: str
) -> None:
    """engine.connect() calls raw_connection() inside SQLAlchemy: not refused as raw; its
    statements are judged one by one (a read on a non-test file passes under writes)."""
    result, _, _ = _run(pytester, monkeypatch, prod_dir, "creator", guard=mode)
    if mode == "writes":
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["E *GuardRefused: *refused SELECT on table orders *"])
        assert "raw_connection" not in result.stdout.str()


def test_creator_engine_onto_a_production_file_is_wrong_db(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """create_engine("sqlite://", creator=...) is judged by the file the creator opened,
    never as SQLite in memory."""
    result, trace, prod = _run(pytester, monkeypatch, prod_dir, "creator")
    [db] = _databases(trace)
    assert (db["engine_id"], db["is_test"], db["statements"]) == ("e3", False, 1)
    assert db["url"] == f"sqlite:///{prod}"
    engines = [r for r in trace if r["type"] == "engine" and r["id"] == "e3"]
    assert engines[-1]["url"] == f"sqlite:///{prod}"
    assert engines[-1]["is_test"] is False
    out = result.stdout.str()
    assert "all on test databases" not in out
    [request] = [r for r in trace if r["type"] == "request"]
    [wrong] = [f["message"] for f in request["findings"] if f["code"] == "WRONG_DB"]
    assert wrong.startswith(f"GET /creator ran 1 statement on sqlite:///{prod} (engine e3")


def test_creator_engine_onto_a_temporary_file_is_clean(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """The same creator engine opening a file in the test's tmp_path is a test database."""
    result, trace, _ = _run(pytester, monkeypatch, prod_dir, "creator", in_tmp=True)
    [db] = _databases(trace)
    assert db["is_test"] is True
    assert db["url"].startswith(f"sqlite:///{pytester.path}/")
    assert db["url"].endswith("/scratch.db")
    result.stdout.fnmatch_lines(["depstrace: 1 request in 1 test, all on test databases.*"])
    assert result.ret == 0


@pytest.mark.parametrize("guard", [None, "all"])
def test_raw_connection_to_postgresql(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    prod_dir: Path,
    postgres: dict[str, str],
    guard: str | None,
) -> None:
    """The same on the real PostgreSQL (psycopg): a raw cursor on depstrace_prod is
    WRONG_DB; under the guard the connection is refused before the pool opens it."""
    url = postgres["psycopg_prod"]
    result, trace, _ = _run(pytester, monkeypatch, prod_dir, "raw-one", guard=guard, prod_url=url)
    [db] = _databases(trace)
    assert (db["database"], db["is_test"], db["statements"]) == ("depstrace_prod", False, 0)
    if guard is None:
        result.assert_outcomes(passed=1)
        assert db["unobserved_connections"] == 1
        [request] = [r for r in trace if r["type"] == "request"]
        assert "WRONG_DB" in {f["code"] for f in request["findings"]}
    else:
        result.assert_outcomes(failed=1)
        assert db["refused"] == {"RAW CONNECTION": 1}
        result.stdout.fnmatch_lines(
            [
                "E *GuardRefused: depstrace guard (DEPSTRACE_GUARD=all) refused "
                "engine.raw_connection() on postgresql+psycopg://*depstrace_prod (engine e1)*"
            ]
        )


CREATOR_APP = """
import psycopg
import sqlalchemy as sa

made = sa.create_engine(
    "postgresql+psycopg://postgres@127.0.0.1/shop_test",
    creator=lambda: psycopg.connect("dbname=depstrace_prod"),
)


def test_nothing():
    pass
"""


@pytest.mark.parametrize(("rule", "is_test"), [(None, False), ("*shop_test*", True)])
def test_creator_url_is_not_trusted_for_other_backends(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, rule: str | None, is_test: bool
) -> None:
    """A PostgreSQL engine with a creator is no test database by the default rule, even
    with a test-looking URL; only a rule the user wrote accepts it (nothing connects)."""
    for name in ("DEPSTRACE_FILE", "DEPSTRACE_TEST_DB", "DEPSTRACE_GUARD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEPSTRACE", "1")
    if rule is not None:
        monkeypatch.setenv("DEPSTRACE_TEST_DB", rule)
    pytester.makepyfile(test_made=CREATOR_APP)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    trace = list(read_records(pytester.path / ".depstrace" / "trace.jsonl"))
    [engine] = [r for r in trace if r["type"] == "engine"]
    assert (engine["database"], engine["is_test"]) == ("shop_test", is_test)


def test_raw_connection_in_a_fixture_is_db_outside_request(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """Outside requests the same: a fixture's raw_connection() read on the production
    file is an outside_request record (statements 0) and a DB_OUTSIDE_REQUEST."""
    result, trace, prod = _run(pytester, monkeypatch, prod_dir, "fixture")
    result.assert_outcomes(passed=1)
    [outside] = [r for r in trace if r["type"] == "outside_request"]
    assert (outside["engine_id"], outside["statements"], outside["is_test"]) == ("e1", 0, False)
    assert (outside["phase"], outside["fixture"]["name"]) == ("setup", "counted")
    assert outside["unobserved_connections"] == 1
    [finding] = [r for r in trace if r["type"] == "finding"]
    assert finding["code"] == "DB_OUTSIDE_REQUEST"
    assert finding["message"].startswith(f"1 connection checked out on sqlite:///{prod} (engine e1")
    assert "are not seen one by one" in finding["message"]


def test_creator_engine_made_before_depstrace_is_judged_by_its_file(
    trace_file: Path, prod_dir: Path
) -> None:
    """A creator engine that connected before depstrace was enabled is registered on its
    first statement, and its file is read there (the connect event has passed)."""
    import sqlalchemy as sa

    import depstrace
    from depstrace import sqlalchemy as probe

    prod = _db(prod_dir / "early.db")
    engine = sa.create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(prod, check_same_thread=False)
    )
    with engine.connect() as conn:  # the pool's first connection, untraced
        conn.exec_driver_sql("SELECT 1")
    depstrace.instrument(trace_file=trace_file)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM orders")
        info = probe.registry.find(engine)
        assert info is not None
        assert (info.url, info.database, info.is_test) == (f"sqlite:///{prod}", "early.db", False)
    finally:
        depstrace.uninstrument()
        engine.dispose()
    [*_, record] = [r for r in read_records(trace_file) if r["type"] == "engine"]
    assert (record["url"], record["is_test"]) == (f"sqlite:///{prod}", False)


def test_raw_connection_is_patched_only_while_the_guard_is_on(trace_file: Path) -> None:
    """Off costs nothing: Engine.raw_connection is SQLAlchemy's own unless the guard is on,
    and is SQLAlchemy's own again after uninstrument."""
    from sqlalchemy.engine import Engine

    import depstrace

    original = Engine.raw_connection
    depstrace.instrument(trace_file=trace_file)
    assert Engine.raw_connection is original
    depstrace.uninstrument()
    depstrace.instrument(trace_file=trace_file, guard="writes")
    assert Engine.raw_connection is not original
    assert Engine.raw_connection.__wrapped__ is original  # type: ignore[attr-defined]
    depstrace.uninstrument()
    assert Engine.raw_connection is original
