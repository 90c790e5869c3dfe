"""Test setup: an empty test database per test, and the get_db override.

The override was written when the shop had one API version: it goes on the
``v1`` app.  ``v2`` is another FastAPI app from the same factory line, with its
own, empty ``dependency_overrides``.
"""

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from app.db import Base
from app.deps import get_db
from app.main import app, version_apps
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


def override_get_db() -> Iterator[Session]:
    db = TestSessionLocal()
    try:
        yield db
    finally:
        db.close()


version_apps["v1"].dependency_overrides[get_db] = override_get_db


@pytest.fixture
def client() -> Iterator[TestClient]:
    Base.metadata.create_all(test_engine)
    yield TestClient(app)
    Base.metadata.drop_all(test_engine)
