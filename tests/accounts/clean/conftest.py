"""Fixtures of the account suite (run by tests/test_account.py in a pytester dir)."""

import sqlite3
from contextlib import closing

import pytest
import sqlalchemy as sa
from app import app, get_db
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

# Plain sqlite3, untraced: the schema is not what the suite is about.
with closing(sqlite3.connect("test.db")) as connection, connection:
    connection.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")

test_engine = sa.create_engine("sqlite:///test.db")


def override_get_db():
    with Session(test_engine) as session:
        yield session


app.dependency_overrides[get_db] = override_get_db  # for the whole run, deliberately


@pytest.fixture(scope="session")
def client():
    with TestClient(app) as client:
        client.post("/items")  # seeding through the app, overridden: fine
        yield client
