"""Test setup done right, once: a session-scoped fixture creates the test database,
overrides get_db for the whole run and removes the override at the end; each
test empties the tables afterwards."""

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from app.db import Base, Item
from app.deps import get_db
from app.main import app
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete
from sqlalchemy.orm import Session, sessionmaker

DATA = Path(os.environ["SCENARIO_DATA"])

# The developer's own database already exists and holds real rows.
with contextlib.closing(sqlite3.connect(DATA / "prod.db")) as _prod:
    _prod.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name VARCHAR(50))")
    _prod.execute("INSERT INTO items (name) VALUES ('real customer order')")
    _prod.commit()


@pytest.fixture(scope="session")
def test_sessions() -> Iterator[sessionmaker[Session]]:
    engine = create_engine(f"sqlite:///{DATA / 'test.db'}")
    Base.metadata.create_all(engine)
    yield sessionmaker(bind=engine)
    Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def client(test_sessions: sessionmaker[Session]) -> Iterator[TestClient]:
    def override_get_db() -> Iterator[Session]:
        with test_sessions() as db:
            yield db

    app.dependency_overrides[get_db] = override_get_db
    with TestClient(app) as client:
        yield client
    app.dependency_overrides.clear()


@pytest.fixture(autouse=True)
def _empty_tables(test_sessions: sessionmaker[Session]) -> Iterator[None]:
    yield
    with test_sessions() as db:
        db.execute(delete(Item))
        db.commit()
