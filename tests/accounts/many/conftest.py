"""Fixtures of the account suite (run by tests/test_account.py in a pytester dir)."""

import sqlite3
from contextlib import closing

import pytest
from app import app
from fastapi.testclient import TestClient

# Plain sqlite3, untraced: the schema is not what the suite is about.
with closing(sqlite3.connect("dev.db")) as connection, connection:
    connection.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")


@pytest.fixture
def client():
    with TestClient(app) as client:
        yield client
