"""The team's fixtures: a fresh test SQLite file per test, named in DATABASE_URL."""

import os
import sqlite3
from contextlib import closing

import pytest
from app.database import Base
from app.main import app
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

DATA = os.environ["SCENARIO_DATA"]

# The bug: this line was meant to run before the app is imported, but the imports
# above (sorted to the top by isort) already built app.database.engine from the
# production default. Changing the variable now changes nothing for the app.
os.environ["DATABASE_URL"] = f"sqlite:///{DATA}/test.db"

# The production database exists before the suite runs and holds one row. Plain
# sqlite3 stands in for that history, so it is not part of the traced suite.
with closing(sqlite3.connect(f"{DATA}/prod.db")) as conn, conn:
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL)")
    conn.execute("INSERT INTO items (name) VALUES ('production item')")


@pytest.fixture(autouse=True)
def fresh_schema():
    engine = create_engine(os.environ["DATABASE_URL"])
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    yield
    engine.dispose()


@pytest.fixture
def client():
    with TestClient(app) as client:
        yield client
