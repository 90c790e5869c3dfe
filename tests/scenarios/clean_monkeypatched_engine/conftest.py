"""Test setup done right for an app without ``Depends``: the module-level engine
and session factory are monkeypatched to a fresh test database for every test."""

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from app import db
from app.main import app
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import sessionmaker

DATA = Path(os.environ["SCENARIO_DATA"])

# The developer's own database already exists and holds real rows.
with contextlib.closing(sqlite3.connect(DATA / "prod.db")) as _prod:
    _prod.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name VARCHAR(50))")
    _prod.execute("CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, action VARCHAR(100))")
    _prod.execute("INSERT INTO items (name) VALUES ('real customer order')")
    _prod.commit()


@pytest.fixture
def test_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{DATA / 'test.db'}")
    db.Base.metadata.create_all(engine)
    monkeypatch.setattr(db, "engine", engine)
    monkeypatch.setattr(db, "SessionLocal", sessionmaker(bind=engine))
    yield engine
    db.Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def client(test_engine: Engine) -> TestClient:
    return TestClient(app)
