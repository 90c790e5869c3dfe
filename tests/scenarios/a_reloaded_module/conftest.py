"""Test setup: reload the dependency module, then point get_db at the test database.

The reload (meant to drop state cached in ``app.deps`` between runs) builds a
*new* ``get_db`` function object; the routes in ``app.main`` still hold the
one imported before the reload, so the override below is keyed on a function
no ``Depends`` uses, and every request reaches ``prod.db``.
"""

import contextlib
import importlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import app.deps
import pytest
from app.db import Base
from app.main import app as fastapi_app
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

importlib.reload(app.deps)


def override_get_db() -> Iterator[Session]:
    db = TestSessionLocal()
    try:
        yield db
    finally:
        db.close()


@pytest.fixture(scope="session", autouse=True)
def _use_test_database() -> Iterator[None]:
    fastapi_app.dependency_overrides[app.deps.get_db] = override_get_db
    yield
    fastapi_app.dependency_overrides.clear()


@pytest.fixture
def client() -> TestClient:
    return TestClient(fastapi_app)
