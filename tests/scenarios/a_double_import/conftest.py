"""Test setup: make the app's top-level imports work, then override get_db.

The app imports ``deps`` (a top-level module, thanks to the ``sys.path`` line
below); this file imports ``app.deps``, the package path an IDE suggests.  Both
names load ``app/deps.py``, so there are two modules and two ``get_db``
functions with the same code, and the override is keyed on the one the routes
never use.
"""

import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "app"))

import pytest
from app.deps import get_db
from db import Base
from fastapi.testclient import TestClient
from main import app as api
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


api.dependency_overrides[get_db] = override_get_db


@pytest.fixture
def client() -> TestClient:
    return TestClient(api)
