"""Test setup done right: one test database for the run, one rolled-back
transaction per test.

Each test gets a connection with an outer transaction; the session the app
receives joins it with ``join_transaction_mode="create_savepoint"``, so the
app's ``commit()`` and ``rollback()`` only release or roll back savepoints and
the fixture's final rollback leaves the database empty for the next test.
"""

import os
from collections.abc import Iterator

import psycopg
import pytest
from app.db import Base, get_db
from app.main import app
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

PG = os.environ["SCENARIO_PG"]  # user@host:port
TEST_DATABASE = f"depstrace_scn_test_rollback_{os.getpid()}"


def admin(sql: str) -> None:
    with psycopg.connect(f"postgresql://{PG}/postgres", autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    admin(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}"')
    admin(f'CREATE DATABASE "{TEST_DATABASE}"')
    engine = create_engine(f"postgresql+psycopg://{PG}/{TEST_DATABASE}")
    try:
        Base.metadata.create_all(engine)
        yield engine
    finally:
        engine.dispose()
        admin(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}"')


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    connection = engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield session
    finally:
        session.close()
        transaction.rollback()
        connection.close()


@pytest.fixture
def client(db_session: Session) -> Iterator[TestClient]:
    app.dependency_overrides[get_db] = lambda: db_session
    try:
        yield TestClient(app)
    finally:
        app.dependency_overrides.clear()
