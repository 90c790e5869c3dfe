"""Test setup: one client for the session, with the session dependency overridden.

Written when the routes used ``get_session``; they use ``get_db`` now, so the
override below is never consulted.
"""

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from app.db import Base
from app.deps import get_session
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


def override_get_session() -> Iterator[Session]:
    with TestSessionLocal() as session:
        yield session


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    app.dependency_overrides[get_session] = override_get_session
    with TestClient(app) as client:
        yield client
    app.dependency_overrides.clear()
