"""Fixtures of the account suite (run by tests/test_account.py in a pytester dir)."""

import sqlite3
from contextlib import closing

import pytest
import sqlalchemy as sa
from app import SessionLocal, app, get_db
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

# Plain sqlite3, untraced: the schema is not what the suite is about.
for name in ("prod.db", "test.db"):
    with closing(sqlite3.connect(name)) as connection, connection:
        connection.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, action TEXT)")

test_engine = sa.create_engine("sqlite:///test.db")


def override_get_db():
    with Session(test_engine) as session:
        yield session


@pytest.fixture(scope="session", autouse=True)
def seed():
    with SessionLocal() as session:  # seeds the database the app was built with: prod.db
        session.execute(sa.text("INSERT INTO items (name) VALUES ('seed')"))
        session.commit()


@pytest.fixture
def client():
    app.dependency_overrides[get_db] = override_get_db
    with TestClient(app) as client:
        yield client
    app.dependency_overrides.clear()
