"""The team's fixtures: a test SQLite file and get_db overridden to use it."""

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

DATA = os.environ["SCENARIO_DATA"]

# The production database exists before the suite runs and holds one category.
# Plain sqlite3 stands in for that history, so it is not part of the traced suite.
with closing(sqlite3.connect(f"{DATA}/prod.db")) as conn, conn:
    conn.execute("CREATE TABLE categories (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL UNIQUE)")
    conn.execute("INSERT INTO categories (name) VALUES ('production category')")

from app import Base, app, get_db  # noqa: E402

engine = create_engine(f"sqlite:///{DATA}/test.db", connect_args={"check_same_thread": False})
TestingSessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)


def override_get_db() -> Iterator[Session]:
    with TestingSessionLocal() as db:
        yield db


app.dependency_overrides[get_db] = override_get_db


@pytest.fixture
def client() -> Iterator[TestClient]:
    Base.metadata.drop_all(bind=engine)
    Base.metadata.create_all(bind=engine)
    with TestClient(app) as client:  # runs the lifespan
        yield client
