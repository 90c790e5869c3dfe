"""Transaction control is not data access: BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE
are never counted as statements, so on their own they never make a finding.

End to end on the real PostgreSQL server: a suite whose fixture creates and drops a
database per test with the ``conn.execute(text("commit"))`` idiom, and a suite whose
fixture and routes really touch the production database next to bare COMMITs.
"""

from __future__ import annotations

from typing import Any

import pytest

from depstrace import _sql
from depstrace._jsonl import read_records

APP = """
import os
from typing import Annotated, Iterator

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker

PG = os.environ["TC_PG"]
prod = sa.create_engine(f"postgresql+psycopg2://{PG}/depstrace_prod")
SessionLocal = sessionmaker(prod)


def get_db() -> Iterator[Session]:
    with SessionLocal() as session:
        yield session


app = FastAPI()


@app.post("/items/{name}")
def add(name: str, db: Annotated[Session, Depends(get_db)]) -> int:
    with db.begin_nested():  # SAVEPOINT ... RELEASE SAVEPOINT around the insert
        db.execute(sa.text("INSERT INTO item VALUES (:name)"), {"name": name})
    db.commit()
    return 1


@app.get("/items")
def count(db: Annotated[Session, Depends(get_db)]) -> int:
    return db.execute(sa.text("SELECT count(*) FROM item")).scalar_one()


@app.get("/only-commit")
def only_commit() -> str:
    with SessionLocal() as db:  # the module engine, outside Depends: production
        db.execute(sa.text("COMMIT"))
        db.execute(sa.text("ROLLBACK"))
    return "ok"


@app.get("/commit-and-read")
def commit_and_read() -> int:
    with SessionLocal() as db:
        db.execute(sa.text("commit"))
        return db.execute(sa.text("SELECT 1")).scalar_one()
"""

PER_TEST_DATABASE = """
import os
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app import app, get_db

PG = os.environ["TC_PG"]
maintenance = sa.create_engine(f"postgresql+psycopg2://{PG}/postgres")


def administer(statement):
    with maintenance.connect() as conn:
        conn.execute(sa.text("commit"))  # DROP/CREATE DATABASE refuse to run in a transaction
        conn.execute(sa.text(statement))


@pytest.fixture
def database():
    name = f"depstrace_tc_{uuid.uuid4().hex[:12]}_test"
    administer(f'DROP DATABASE IF EXISTS "{name}"')
    administer(f'CREATE DATABASE "{name}"')
    engine = sa.create_engine(f"postgresql+psycopg2://{PG}/{name}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE item (name TEXT)"))
    yield engine
    engine.dispose()
    administer(f'DROP DATABASE "{name}"')


@pytest.fixture
def client(database):
    def override():
        with Session(database) as session:
            yield session

    app.dependency_overrides[get_db] = override
    with TestClient(app) as client:
        yield client
    app.dependency_overrides.clear()
"""

ITEM_TESTS = """
def test_add(client):
    assert client.post("/items/lamp").json() == 1
    assert client.get("/items").json() == 1


def test_empty(client):
    assert client.get("/items").json() == 0
"""

SEEDS_PRODUCTION = """
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import app, prod


@pytest.fixture
def seeded():
    with prod.connect() as conn:
        conn.execute(sa.text("commit"))
        conn.execute(sa.text("CREATE TEMP TABLE seed (name TEXT)"))
        conn.execute(sa.text("INSERT INTO seed VALUES ('real customer')"))
        conn.execute(sa.text("commit"))


@pytest.fixture
def only_commits():
    with prod.connect() as conn:
        conn.execute(sa.text("BEGIN"))
        conn.execute(sa.text("SAVEPOINT one"))
        conn.execute(sa.text("RELEASE SAVEPOINT one"))
        conn.execute(sa.text("COMMIT"))


def test_seeded(seeded):
    pass


def test_only_commits(only_commits):
    pass


def test_routes():
    with TestClient(app) as client:
        assert client.get("/only-commit").json() == "ok"
        assert client.get("/commit-and-read").json() == 1
"""


def run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pg: str, **files: str
) -> tuple[pytest.RunResult, list[dict[str, Any]]]:
    """Run the files with DEPSTRACE=1 in a subprocess; return the result and the trace."""
    for name in ("DEPSTRACE_FILE", "DEPSTRACE_TEST_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("TC_PG", pg)
    pytester.makepyfile(app=APP, **files)
    pytester.makeini("[pytest]\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    return result, list(read_records(pytester.path / ".depstrace" / "trace.jsonl"))


@pytest.fixture
def pg(postgres: dict[str, str]) -> str:
    """``user@host:port`` of the real PostgreSQL server."""
    return postgres["psycopg_test"].split("://", 1)[1].rsplit("/", 1)[0]


@pytest.mark.postgres
def test_per_test_database_fixture_with_bare_commit_is_clean(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pg: str
) -> None:
    """COMMIT before DROP/CREATE DATABASE on the maintenance database makes no finding,
    and SAVEPOINT/RELEASE around a request's insert are not counted."""
    result, trace = run(
        pytester, monkeypatch, pg, conftest=PER_TEST_DATABASE, test_items=ITEM_TESTS
    )
    result.assert_outcomes(passed=2)
    assert [r for r in trace if r["type"] == "finding"] == []
    assert [f for r in trace if r["type"] == "request" for f in r["findings"]] == []
    outside = [
        (r["test"], r["phase"], r["url"].rsplit("/", 1)[1], r["statements"], r["operations"])
        for r in trace
        if r["type"] == "outside_request" and r["url"].endswith("/postgres")
    ]
    assert outside == [
        (
            "test_items.py::test_add",
            "setup",
            "postgres",
            2,
            {"DROP DATABASE": 1, "CREATE DATABASE": 1},
        ),
        ("test_items.py::test_add", "teardown", "postgres", 1, {"DROP DATABASE": 1}),
        (
            "test_items.py::test_empty",
            "setup",
            "postgres",
            2,
            {"DROP DATABASE": 1, "CREATE DATABASE": 1},
        ),
        ("test_items.py::test_empty", "teardown", "postgres", 1, {"DROP DATABASE": 1}),
    ]
    add = next(r for r in trace if r["type"] == "request" and r["method"] == "POST")
    assert [(d["statements"], d["operations"], d["commits"]) for d in add["databases"]] == [
        (1, {"INSERT": 1}, 2)
    ]
    assert "all on test databases" in result.stdout.str()


@pytest.mark.postgres
def test_commit_next_to_real_production_access_still_counts(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pg: str
) -> None:
    """A fixture's INSERT on production is a finding whose count leaves out the COMMITs;
    only COMMIT/SAVEPOINT/RELEASE, in a fixture or a request, are none."""
    result, trace = run(pytester, monkeypatch, pg, test_prod=SEEDS_PRODUCTION)
    result.assert_outcomes(passed=3)
    prod_url = f"postgresql+psycopg2://{pg}/depstrace_prod"
    outside = [
        (r["test"], r["phase"], r["statements"], r["operations"])
        for r in trace
        if r["type"] == "outside_request"
    ]
    assert outside == [("test_prod.py::test_seeded", "setup", 2, {"CREATE": 1, "INSERT": 1})]
    findings = [
        (r["code"], r["test"], r["phase"], r["message"]) for r in trace if r["type"] == "finding"
    ]
    assert findings == [
        (
            "DB_OUTSIDE_REQUEST",
            "test_prod.py::test_seeded",
            "setup",
            f"2 statements ran on {prod_url} (engine e1, created at app.py:9 during import) "
            "outside any request, during the setup of function-scoped fixture 'seeded' "
            "(test_prod.py:8) for test_prod.py::test_seeded: that fixture used a non-test "
            "database directly. Reached from test_prod.py:12 in test_prod:seeded(), through "
            "module-level test_prod.prod.",
        )
    ]
    requests = {r["path"]: r for r in trace if r["type"] == "request"}
    assert requests["/only-commit"]["databases"] == []
    assert requests["/only-commit"]["findings"] == []
    read = requests["/commit-and-read"]
    assert [(d["statements"], d["operations"]) for d in read["databases"]] == [(1, {"SELECT": 1})]
    assert [f["code"] for f in read["findings"]] == ["WRONG_DB", "DI_BYPASS"]


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        ("BEGIN", "BEGIN"),
        ("begin;", "BEGIN"),
        ("BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE", "BEGIN"),
        ("BEGIN IMMEDIATE", "BEGIN"),
        ("START TRANSACTION READ ONLY", "START TRANSACTION"),
        ("commit", "COMMIT"),
        ("/* done */ COMMIT;", "COMMIT"),
        ("END", "END"),
        ("ABORT", "ABORT"),
        ("ROLLBACK TO SAVEPOINT sa_savepoint_1", "ROLLBACK"),
        ("SAVEPOINT sa_savepoint_1", "SAVEPOINT"),
        ("RELEASE SAVEPOINT sa_savepoint_1", "RELEASE"),
        ("COMMIT; BEGIN;", "BEGIN"),
        ("COMMIT; -- done", "COMMIT"),
    ],
)
def test_transaction_control_is_recognised(statement: str, operation: str) -> None:
    """Every spelling of transaction control is named by its keyword and not counted."""
    assert _sql.operation(statement) == operation
    assert operation in _sql.TRANSACTION_CONTROL


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        ("BEGIN my_proc(); END;", "BLOCK"),
        ("begin\n  update t set x = 1;\nend;", "BLOCK"),
        ("BEGIN; INSERT INTO t VALUES (1); COMMIT;", "INSERT"),
        ("commit;\n DROP DATABASE x", "DROP DATABASE"),
        ("START SLAVE", "START"),
    ],
)
def test_data_access_behind_transaction_words_still_counts(statement: str, operation: str) -> None:
    """A code block, or statements after a BEGIN in one string, are counted as what they do."""
    assert _sql.operation(statement) == operation
    assert operation not in _sql.TRANSACTION_CONTROL
