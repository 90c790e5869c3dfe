"""Test setup: a test database and a client whose get_db override is removed again."""

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from app.db import Base
from app.deps import get_db
from app.main import app
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
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


@pytest.fixture
def client() -> Iterator[TestClient]:
    app.dependency_overrides[get_db] = override_get_db
    yield TestClient(app)
    del app.dependency_overrides[get_db]
