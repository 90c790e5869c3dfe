"""Test setup: a test database next to the developer's own, already populated one."""

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from app.db import Base, Item
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

test_engine = create_engine(f"sqlite:///{DATA / 'test.db'}")
TestSessionLocal = sessionmaker(bind=test_engine)
Base.metadata.create_all(test_engine)


def override_get_db() -> Iterator[Session]:
    db = TestSessionLocal()
    try:
        yield db
    finally:
        db.close()


@pytest.fixture(autouse=True)
def _empty_test_database() -> Iterator[None]:
    yield
    with TestSessionLocal() as db:
        db.execute(delete(Item))
        db.commit()


@pytest.fixture
def client() -> TestClient:
    return TestClient(app)
