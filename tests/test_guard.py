"""Guard mode (docs/guard.md): refused statements never reach the database.

Every test checks the real database afterwards: a SQLite file outside pytest's
temporary directories (a "production" database by the default rule) and the real
PostgreSQL server's ``depstrace_prod``.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from fastapi import BackgroundTasks, FastAPI

import depstrace
from depstrace import _sql, guard
from depstrace import sqlalchemy as probe
from depstrace._config import ConfigurationError, guard_mode
from depstrace._jsonl import read_records

APP = """
import os

import sqlalchemy as sa
from fastapi import FastAPI

prod = sa.create_engine(os.environ["G_PROD"])
app = FastAPI()


@app.post("/orders")
def order() -> str:
    with prod.begin() as conn:  # outside Depends: DI_BYPASS
        conn.execute(sa.text("INSERT INTO orders (note) VALUES (:note)"), {"note": "card-4242"})
    return "ok"


@app.get("/orders")
def count() -> int:
    with prod.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
"""

TESTS = """
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import depstrace
from app import app, prod


def test_write_fails():
    with TestClient(app) as client:
        client.post("/orders")


def test_write_is_a_500():
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/orders").status_code == 500


def test_read_passes():
    with TestClient(app) as client:
        assert client.get("/orders").json() == 0


@pytest.mark.depstrace_allow_db("prod.db")
def test_marker_allows():
    with TestClient(app) as client:
        assert client.post("/orders").json() == "ok"


def test_context_manager_allows():
    with depstrace.allow_db("*prod*"), TestClient(app) as client:
        assert client.post("/orders").json() == "ok"


@pytest.fixture
def seeded():
    with prod.begin() as conn:
        conn.execute(sa.text("DELETE FROM orders"))


def test_fixture_write_is_refused(seeded):
    pass
"""


def _prod_db(directory: Path) -> Path:
    path = directory / "prod.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
    return path


def _rows(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn, conn:
        return conn.execute("SELECT note FROM orders").fetchall()


def _run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str
) -> tuple[pytest.RunResult, list[dict[str, Any]]]:
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB", "DEPSTRACE_GUARD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(app=APP, test_shop=TESTS)
    pytester.makeini("[pytest]\npythonpath = .\naddopts = --strict-markers\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    trace = pytester.path / ".depstrace" / "trace.jsonl"
    return result, list(read_records(trace)) if trace.exists() else []


def test_writes_mode_refuses_writes_and_lets_reads_and_allowances_through(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """DEPSTRACE_GUARD=writes: the refused INSERT and DELETE never land, the request is a
    500, the read passes, the marker and allow_db let their writes land; the message
    and the account say what, where and why, and never a parameter value."""
    prod = _prod_db(prod_dir)
    url = f"sqlite:///{prod}"
    result, trace = _run(pytester, monkeypatch, {"G_PROD": url, "DEPSTRACE_GUARD": "writes"})
    result.assert_outcomes(passed=4, failed=1, errors=1)
    assert _rows(prod) == [("card-4242",), ("card-4242",)]  # marker + context manager only
    out = result.stdout.str()
    # Only pytest's listing of the test's source shows the value: never depstrace.
    assert "card-4242" not in out.split("= depstrace =", 1)[1]
    assert [line for line in out.splitlines() if "card-4242" in line and "guard" in line] == []
    assert "card-4242" not in (pytester.path / ".depstrace" / "trace.jsonl").read_text()
    result.stdout.fnmatch_lines(
        [
            "E *depstrace.guard.GuardRefused: depstrace guard (DEPSTRACE_GUARD=writes) refused "
            f"INSERT on table orders on {url} (engine e1): it is not a test database by the "
            "default rule *",
            "E *  request  POST /orders (call of test_shop.py::test_write_fails)",
            f"E *  WRONG_DB: POST /orders ran 1 statement on {url} *",
            "E *  DI_BYPASS: POST /orders used engine e1 *It was reached from the endpoint "
            "itself, app.py:13 in app:order(), through module-level app.prod.",
            "E *    fix: Take the session from a dependency *",
            '*@pytest.mark.depstrace_allow_db("prod.db") on the test, or `with '
            'depstrace.allow_db("prod.db"):` around the code*',
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E *depstrace.guard.GuardRefused: *refused DELETE on table orders on *",
            "E *  outside any request: setup of function-scoped fixture 'seeded' "
            "(test_shop.py:35), test test_shop.py::test_fixture_write_is_refused",
            "E *  DB_OUTSIDE_REQUEST: *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "depstrace guard (DEPSTRACE_GUARD=writes): refused 3 statements on non-test databases:",
            f"  INSERT orders on {url} (POST /orders in test_shop.py::test_write_fails) "
            "[WRONG_DB, DI_BYPASS, ENGINE_FROM_ENV]",
            f"  INSERT orders on {url} (POST /orders in test_shop.py::test_write_is_a_500) "
            "[WRONG_DB, DI_BYPASS, ENGINE_FROM_ENV]",
            f"  DELETE orders on {url} (outside any request, fixture 'seeded' in "
            "test_shop.py::test_fixture_write_is_refused) [DB_OUTSIDE_REQUEST]",
            f"  allowed 1 statement on {url} (engine e1) by marker "
            "depstrace_allow_db('prod.db') in test_shop.py::test_marker_allows",
            f"  allowed 1 statement on {url} (engine e1) by depstrace.allow_db('*prod*') in "
            "test_shop.py::test_context_manager_allows",
        ]
    )
    guarded = [
        (r["action"], r["operation"], r["table"], r["test"].rpartition(":")[2], r["allowed_by"])
        for r in trace
        if r["type"] == "guard"
    ]
    assert guarded == [
        ("refused", "INSERT", "orders", "test_write_fails", None),
        ("refused", "INSERT", "orders", "test_write_is_a_500", None),
        ("allowed", "INSERT", None, "test_marker_allows", "marker depstrace_allow_db('prod.db')"),
        ("allowed", "INSERT", None, "test_context_manager_allows", "depstrace.allow_db('*prod*')"),
        ("refused", "DELETE", "orders", "test_fixture_write_is_refused", None),
    ]
    refused = next(r for r in trace if r["type"] == "guard")
    assert [f["code"] for f in refused["findings"]] == ["WRONG_DB", "DI_BYPASS", "ENGINE_FROM_ENV"]
    assert refused["request"]["method"] == "POST"
    # What was refused never ran: it is no write of the account's first lines, and the
    # records count it apart from the statements that reached the database.
    account = out.split("= depstrace =", 1)[1]
    assert "depstrace: 2 requests wrote to a non-test database and committed" in account
    assert "without a commit" not in account
    assert "refused by the guard 2 (INSERT 2)" in account
    written = [
        (r["test"].rpartition(":")[2], db["operations"], db["refused"])
        for r in trace
        if r["type"] == "request" and r["method"] == "POST"
        for db in r["databases"]
    ]
    assert written == [
        ("test_write_fails", {}, {"INSERT": 1}),
        ("test_write_is_a_500", {}, {"INSERT": 1}),
        ("test_marker_allows", {"INSERT": 1}, {}),
        ("test_context_manager_allows", {"INSERT": 1}, {}),
    ]
    outside = [r for r in trace if r["type"] == "outside_request" and r["refused"]]
    assert [(r["operations"], r["refused"]) for r in outside] == [({}, {"DELETE": 1})]


def test_all_mode_refuses_reads_too(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """--depstrace-guard all refuses the SELECT as well; nothing lands."""
    prod = _prod_db(prod_dir)
    result, _ = _run(
        pytester,
        monkeypatch,
        {"G_PROD": f"sqlite:///{prod}"},
        "--depstrace-guard",
        "all",
        "-k",
        "read_passes or write_fails or a_500",
    )
    result.assert_outcomes(failed=2, passed=1)  # the 500 test passes: a refusal is a 500
    result.stdout.fnmatch_lines(["*refused SELECT on table orders on sqlite:///*"])
    assert _rows(prod) == []


def test_ini_option_turns_the_guard_on(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """``depstrace_guard = writes`` in the ini file is enough (no DEPSTRACE=1 needed)."""
    prod = _prod_db(prod_dir)
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB", "DEPSTRACE_GUARD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("G_PROD", f"sqlite:///{prod}")
    pytester.makepyfile(app=APP, test_shop=TESTS)
    pytester.makeini("[pytest]\npythonpath = .\ndepstrace_guard = writes\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "write_fails")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*GuardRefused: depstrace guard (DEPSTRACE_GUARD=writes)*"])
    assert _rows(prod) == []


def test_guard_off_installs_nothing_and_the_write_lands(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """Tracing without the guard: the marker is still registered (--strict-markers), the
    write lands, no guard record or line exists."""
    prod = _prod_db(prod_dir)
    result, trace = _run(
        pytester, monkeypatch, {"G_PROD": f"sqlite:///{prod}", "DEPSTRACE": "1"}, "-k", "marker"
    )
    result.assert_outcomes(passed=1)
    assert _rows(prod) == [("card-4242",)]
    assert [r for r in trace if r["type"] == "guard"] == []
    assert "depstrace guard" not in result.stdout.str()


def test_guard_off_installs_the_unguarded_hooks(
    trace_file: Path, sqlite_urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the guard off the probes install their plain hooks (SQLAlchemy's listener,
    the drivers' statement hook), and the guard's check is never called; with it on,
    the guarded ones."""
    import asyncpg  # noqa: F401 - instrumented at once, not on import
    import psycopg  # noqa: F401
    import sqlalchemy as sa
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from depstrace.stores import pgdrivers

    calls: list[str] = []
    monkeypatch.setattr(guard, "check", lambda *args: calls.append(args[1]))
    depstrace.instrument(trace_file=trace_file)
    assert guard.mode() == "off"
    assert event.contains(Engine, "before_cursor_execute", probe._before_cursor_execute)
    assert not event.contains(Engine, "before_cursor_execute", probe._guarded_before_cursor_execute)
    assert not event.contains(Engine, "commit", probe._guarded_commit)
    assert pgdrivers._hook is pgdrivers.statement  # asyncpg and psycopg are imported
    engine = sa.create_engine(sqlite_urls["prod"])
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    assert calls == []
    depstrace.uninstrument()
    depstrace.instrument(trace_file=trace_file, guard="writes")
    assert event.contains(Engine, "before_cursor_execute", probe._guarded_before_cursor_execute)
    assert not event.contains(Engine, "before_cursor_execute", probe._before_cursor_execute)
    assert pgdrivers._hook is pgdrivers.guarded_statement
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert calls == ["SELECT"]
    depstrace.uninstrument()
    assert not event.contains(Engine, "before_cursor_execute", probe._guarded_before_cursor_execute)
    assert guard.mode() == "off"
    engine.dispose()


def test_commit_of_an_allowed_write_outside_the_allowance_is_refused(
    trace_file: Path, sqlite_urls: dict[str, str]
) -> None:
    """A write allowed inside ``allow_db`` cannot be committed outside it: the COMMIT is
    refused and the row never lands; a transaction that did not write commits."""
    import sqlalchemy as sa

    engine = sa.create_engine(sqlite_urls["prod"])
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    depstrace.instrument(trace_file=trace_file, guard="writes")
    with engine.connect() as conn:
        with depstrace.allow_db(sqlite_urls["prod"]):
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        with pytest.raises(depstrace.GuardRefused, match="refused COMMIT of a transaction"):
            conn.commit()
        conn.rollback()
        conn.execute(sa.text("SELECT count(*) FROM t"))
        conn.commit()  # nothing written: never refused
    depstrace.uninstrument()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 0
    engine.dispose()


@pytest.mark.parametrize(
    ("operation", "statement", "writes", "all_"),
    [
        ("SELECT", "SELECT * FROM t", False, True),
        ("WITH", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", True, True),
        ("INSERT", "INSERT INTO t VALUES (1)", True, True),
        ("CREATE", "CREATE TABLE t (x int)", True, True),
        ("COPY", "COPY t FROM STDIN", True, True),
        ("CREATE DATABASE", 'CREATE DATABASE "x_test"', False, False),
        ("DROP DATABASE", 'DROP DATABASE "x_test"', False, False),
        ("SELECT pg_database", "SELECT 1 FROM pg_database WHERE datname = $1", False, False),
        ("BEGIN", "BEGIN", False, False),
        ("SAVEPOINT", "SAVEPOINT a", False, False),
        ("ROLLBACK", "ROLLBACK", False, False),
    ],
)
def test_what_each_mode_refuses(operation: str, statement: str, writes: bool, all_: bool) -> None:
    """Writes and DDL are refused in both modes, reads only in ``all``; transaction
    control and server administration never."""
    assert _sql.operation(statement) == operation
    assert guard.refuses("writes", operation, statement) is writes
    assert guard.refuses("all", operation, statement) is all_


def test_a_bad_guard_value_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEPSTRACE_GUARD=yes names the variable and the accepted values; pytest stops."""
    with pytest.raises(ConfigurationError) as raised:
        guard_mode({"DEPSTRACE_GUARD": "yes"})
    assert str(raised.value) == (
        "DEPSTRACE_GUARD='yes' is not a valid value. Set DEPSTRACE_GUARD to off (the default: "
        "refuse nothing), writes (refuse writes on databases that are not test databases) or "
        "all (refuse every statement on them)."
    )
    monkeypatch.setenv("DEPSTRACE_GUARD", "yes")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: depstrace: DEPSTRACE_GUARD='yes' is not a valid value.*"])


XDIST_TESTS = """
import os

import pytest
import sqlalchemy as sa

prod = sa.create_engine(os.environ["G_PROD"])


@pytest.mark.parametrize("n", range(4))
def test_write(n):
    with prod.begin() as conn:
        conn.execute(sa.text("INSERT INTO orders (note) VALUES ('x')"))
"""


def test_under_xdist_each_worker_refuses_and_the_controller_lists_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """``-n 2``: every worker guards; the one account lists each worker's refusals
    (and the controller, which ran no test, adds no line of its own)."""
    prod = _prod_db(prod_dir)
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("G_PROD", f"sqlite:///{prod}")
    monkeypatch.setenv("DEPSTRACE_GUARD", "writes")
    pytester.makepyfile(test_orders=XDIST_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(failed=4)
    assert _rows(prod) == []
    headers = [line for line in result.stdout.lines if line.startswith("depstrace guard (")]
    counts = [
        re.fullmatch(
            r"depstrace guard \(DEPSTRACE_GUARD=writes\) in pytest-xdist worker (gw[01]): "
            r"refused (\d) statements? on non-test databases:",
            header,
        )
        for header in headers
    ]
    assert all(counts), headers  # no line without a worker: none from the controller
    assert sum(int(match[2]) for match in counts if match) == 4
    refused = [line for line in result.stdout.lines if line.startswith("  INSERT orders on ")]
    assert len(refused) == 4
    # A worker's message offers the marker too.
    result.stdout.fnmatch_lines(['*@pytest.mark.depstrace_allow_db("prod.db") on the test*'])


def test_a_refused_write_is_no_uncommitted_write(
    trace_file: Path, sqlite_urls: dict[str, str]
) -> None:
    """A background task's refused INSERT (after a 200) rolled back is not a write the
    next request could have missed: no SESSION_NOT_COMMITTED, and the row never lands."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    engine = sa.create_engine(sqlite_urls["prod"])
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE audit (x INTEGER)"))
    depstrace.instrument(trace_file=trace_file, guard="writes")
    app = FastAPI()

    def audit() -> None:
        with Session(engine) as session:
            session.execute(sa.text("INSERT INTO audit VALUES (1)"))
            session.commit()

    @app.post("/orders")
    def order(tasks: BackgroundTasks) -> str:
        tasks.add_task(audit)
        return "ok"

    @app.get("/audit")
    def count() -> int:
        with Session(engine) as session:
            return session.execute(sa.text("SELECT count(*) FROM audit")).scalar_one()

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/orders").status_code == 200
        assert client.get("/audit").json() == 0
    engine.dispose()
    session = depstrace.uninstrument()
    assert session is not None
    codes = [[f["code"] for f in r["findings"]] for r in session.requests]
    assert codes == [["WRONG_DB", "DI_BYPASS"], ["WRONG_DB", "DI_BYPASS"]]


def test_the_option_beats_the_variable_and_the_variable_beats_the_ini_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """``depstrace_guard = off`` in the ini, DEPSTRACE_GUARD=all: the read is refused;
    add ``--depstrace-guard writes``: it passes."""
    prod = _prod_db(prod_dir)
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("G_PROD", f"sqlite:///{prod}")
    monkeypatch.setenv("DEPSTRACE_GUARD", "all")
    pytester.makepyfile(app=APP, test_shop=TESTS)
    pytester.makeini("[pytest]\npythonpath = .\ndepstrace_guard = off\n")
    by_variable = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "read_passes")
    by_variable.assert_outcomes(failed=1)
    by_variable.stdout.fnmatch_lines(["*GuardRefused: depstrace guard (DEPSTRACE_GUARD=all)*"])
    by_option = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-k", "read_passes", "--depstrace-guard", "writes"
    )
    by_option.assert_outcomes(passed=1)
