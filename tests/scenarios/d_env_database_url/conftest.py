"""The team's fixtures: point the settings at a test SQLite file, then import the app."""

import os
import sqlite3
from contextlib import closing

DATA = os.environ["SCENARIO_DATA"]

# The production database exists before the suite runs and holds one row. Plain
# sqlite3 stands in for that history, so it is not part of the traced suite.
with closing(sqlite3.connect(f"{DATA}/prod.db")) as conn, conn:
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL)")
    conn.execute("INSERT INTO items (name) VALUES ('production item')")

# The bug: setdefault keeps a DATABASE_URL that is already exported (CI exports
# the production one for the deploy job), so the settings below never see this.
os.environ.setdefault("DATABASE_URL", f"sqlite:///{DATA}/test.db")

import pytest  # noqa: E402
from app.database import Base, engine  # noqa: E402
from app.main import app  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def schema():
    Base.metadata.create_all(bind=engine)


@pytest.fixture
def client():
    with TestClient(app) as client:
        yield client
