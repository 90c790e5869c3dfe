"""Test setup: a test database next to the developer's own, already populated one."""

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from app.db import Base, engine_for
from app.main import app
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

DATA = Path(os.environ["SCENARIO_DATA"])
TEST_DATABASE_URL = f"sqlite:///{DATA / 'test.db'}"

# The developer's own database already exists and holds real rows.
with contextlib.closing(sqlite3.connect(DATA / "prod.db")) as _prod:
    _prod.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name VARCHAR(50))")
    _prod.execute("INSERT INTO items (name) VALUES ('real customer order')")
    _prod.commit()

Base.metadata.create_all(engine_for(TEST_DATABASE_URL))


def override_db() -> Iterator[Session]:
    with Session(engine_for(TEST_DATABASE_URL)) as session:
        yield session


@pytest.fixture
def client() -> TestClient:
    return TestClient(app)
