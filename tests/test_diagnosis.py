"""The hard parts of the diagnosis, in-process: what must fire and what must stay silent.

The scenario suite (tests/test_scenarios.py) proves each root cause end to end
through pytest; these tests pin the edges of the rules.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from depstrace import _sql, testing
from depstrace import sqlalchemy as probe
from depstrace.report import reevaluate


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        ("SELECT 1", "SELECT"),
        ("-- a comment\n  select * from t", "SELECT"),
        ('CREATE DATABASE "x"', "CREATE DATABASE"),
        ("drop   database if exists x", "DROP DATABASE"),
        ("ALTER ROLE app SET search_path = x", "ALTER ROLE"),
        ("CREATE TABLE item (id int)", "CREATE"),
        ("DROP TABLE item", "DROP"),
        ("/* hint */ INSERT INTO t VALUES (1)", "INSERT"),
        ("SELECT 1 FROM pg_database WHERE datname = $1", "SELECT pg_database"),
        ("", "?"),
    ],
)
def test_operation_keeps_the_object_of_server_administration(
    statement: str, operation: str
) -> None:
    """CREATE/DROP/ALTER DATABASE are administration, not application data."""
    assert _sql.operation(statement) == operation


def items_app(engine: sa.Engine) -> FastAPI:
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS item (name TEXT UNIQUE)"))
    app = FastAPI()

    def get_db() -> Iterator[Session]:
        with Session(engine) as session:
            yield session

    db = Annotated[Session, Depends(get_db)]

    @app.post("/items/{name}", status_code=201)
    def create(name: str, session: db, commit: bool = True) -> str:
        session.execute(sa.text("INSERT INTO item VALUES (:n)"), {"n": name})
        if name == "bad":
            raise HTTPException(409, "bad name")
        if commit:
            session.commit()
        return name

    @app.get("/items")
    def count(session: db) -> int:
        return int(session.execute(sa.text("SELECT count(*) FROM item")).scalar_one())

    return app


def codes(records: list[dict]) -> list[list[str]]:
    return [[f["code"] for f in r["findings"]] for r in records]


def test_rolled_back_write_then_read_is_not_committed(tmp_path: Path) -> None:
    """A successful request whose write was never committed, then a read: the finding."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'test.db'}")
    app = items_app(engine)
    with testing.capture() as records, TestClient(app) as client:
        client.post("/items/a", params={"commit": False})
        assert client.get("/items").json() == 0  # the write is gone
    assert codes(records) == [[], ["SESSION_NOT_COMMITTED"]]
    assert records[0]["databases"][0]["discarded_writes"] == 1
    message = records[1]["findings"][0]["message"]
    assert "after POST /items/a (r1) of the same test wrote to it" in message


def test_committed_write_and_failed_request_stay_silent(tmp_path: Path) -> None:
    """A commit, or a request that failed on purpose (409), expects nothing to persist."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'test.db'}")
    app = items_app(engine)
    with testing.capture() as records, TestClient(app) as client:
        client.post("/items/a")
        assert client.post("/items/bad").status_code == 409
        assert client.get("/items").json() == 1
    assert codes(records) == [[], [], []]
    assert records[0]["databases"][0]["commits"] == 1


def test_engine_from_env_names_the_variable_never_the_value(
    tmp_path: Path, prod_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-test engine built from an exported variable: named, value not shown; a test
    database from a variable is fine."""
    prod = f"sqlite:///{prod_dir / 'prod.db'}"
    test = f"sqlite:///{tmp_path / 'test.db'}"
    monkeypatch.setenv("DATABASE_URL", prod)
    monkeypatch.setenv("TEST_DATABASE_URL", test)
    with testing.capture() as records:
        prod_app = items_app(sa.create_engine(prod))
        test_app = items_app(sa.create_engine(test))
        with TestClient(prod_app) as client:
            client.get("/items")
        with TestClient(test_app) as client:
            client.get("/items")
    assert codes(records) == [["WRONG_DB", "ENGINE_FROM_ENV"], []]
    finding = records[0]["findings"][1]
    assert "$DATABASE_URL holds exactly this URL (value not shown)" in finding["message"]
    assert records[1]["databases"][0]["env_vars"] == ["TEST_DATABASE_URL"]


def test_password_of_an_env_engine_never_reaches_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The variable holds a password; the finding shows only the redacted URL."""
    url = "postgresql+psycopg://app:s3cr3t-pw@127.0.0.1:1/shop"
    monkeypatch.setenv("DATABASE_URL", url)
    with testing.capture() as records:
        engine = sa.create_engine(url)
        info = probe.registry.lookup(engine)
    assert info.env_vars == ("DATABASE_URL",)
    assert "s3cr3t" not in repr(info)
    assert records == []


def test_reevaluating_keeps_what_was_found_while_running(tmp_path: Path) -> None:
    """Re-judging with another test-database rule recomputes WRONG_DB and keeps the rest."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'test.db'}")
    app = items_app(engine)
    with testing.capture() as records, TestClient(app) as client:
        client.post("/items/a", params={"commit": False})
        client.get("/items")
    judged = reevaluate(records[1], lambda url: False)
    assert [f["code"] for f in judged["findings"]] == ["WRONG_DB", "SESSION_NOT_COMMITTED"]
