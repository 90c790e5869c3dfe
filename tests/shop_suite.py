"""A small FastAPI suite spread over several test files, for runs split across processes.

Serially it ends with: the /stats requests of two tests reaching prod.db
(WRONG_DB, DI_BYPASS), /openapi.json requests that reach no database, a
statement on prod.db at conftest import (DB_OUTSIDE_REQUEST, repeated by every
process that imports the conftest), an override no route uses
(OVERRIDE_UNUSED), and an override only test_users.py consults (used, so no
finding, although a process that runs only test_items.py never consults it).
"""

from __future__ import annotations

import re

import pytest

APP = """
import os
from typing import Annotated, Iterator

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker

engine = sa.create_engine(f"sqlite:///{os.environ['SCENARIO_DATA']}/prod.db")
SessionLocal = sessionmaker(bind=engine)


def get_db() -> Iterator[Session]:
    with SessionLocal() as session:
        yield session


def get_legacy_db() -> Iterator[Session]:  # no route depends on it any more
    yield from get_db()


def get_user() -> str:
    return "real user"


app = FastAPI(title="shop")


@app.get("/items")
def items(db: Annotated[Session, Depends(get_db)]) -> int:
    return len(db.execute(sa.text("SELECT 1")).all())


@app.get("/stats")
def stats() -> int:
    with SessionLocal() as session:  # bypasses Depends: always the module engine
        return len(session.execute(sa.text("SELECT 1")).all())


@app.get("/me")
def me(user: Annotated[str, Depends(get_user)]) -> str:
    return user
"""

CONFTEST = """
import os

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app import app, engine, get_db, get_legacy_db, get_user

with engine.connect() as connection:  # a statement on prod.db while importing
    connection.execute(sa.text("SELECT 1"))

test_engine = sa.create_engine(f"sqlite:///{os.environ['SCENARIO_DATA']}/test.db")


def override_get_db():
    with Session(test_engine) as session:
        yield session


def fake_user() -> str:
    return "test user"


app.dependency_overrides[get_db] = override_get_db
app.dependency_overrides[get_legacy_db] = override_get_db
app.dependency_overrides[get_user] = fake_user


@pytest.fixture
def client():
    with TestClient(app) as client:
        yield client
"""

TEST_ITEMS = """
class TestItems:
    def test_list(self, client):
        assert client.get("/items").json() == 1

    def test_list_twice(self, client):
        assert client.get("/items").json() == client.get("/items").json() == 1


def test_stats(client):
    assert client.get("/stats").json() == 1


def test_docs(client):
    assert client.get("/openapi.json").status_code == 200
"""

TEST_USERS = """
import pytest


def test_me(client):
    assert client.get("/me").json() == "test user"


@pytest.mark.parametrize("n", range(3))
def test_me_again(client, n):
    assert client.get("/me").json() == "test user"
    assert client.get("/items").json() == 1


def test_stats_too(client):
    assert client.get("/stats").json() == 1
"""

# How many tests the suite has, and what its serial account says first.
TESTS = 9
HEADLINE = "depstrace: 2 of 13 requests reached a non-test database, in 2 tests."


def write_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write the suite into ``pytester``'s directory, traced by the environment."""
    data = pytester.path / "data"
    data.mkdir()
    for name in ("DEPSTRACE_FILE", "DEPSTRACE_TEST_DB", "DEPSTRACE_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.setenv("COLUMNS", "1000")  # one line per fact: the paths' length moves no break
    pytester.makepyfile(app=APP, conftest=CONFTEST, test_items=TEST_ITEMS, test_users=TEST_USERS)
    pytester.makeini("[pytest]\npythonpath = .\n")


def account(output: str) -> list[str]:
    """The lines of the depstrace section of a pytest run's terminal output."""
    section = output.split("= depstrace =", 1)[1].splitlines()[1:]
    end = next(i for i, line in enumerate(section) if re.match(r"=+ .* =+$", line))
    return section[:end]
