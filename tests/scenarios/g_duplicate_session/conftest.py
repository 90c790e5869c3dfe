"""The team's fixtures: a fresh test SQLite file per test with one user, get_db overridden."""

import os
from collections.abc import Iterator

import pytest
from app import Base, Note, User, app, get_db
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

engine = create_engine(
    f"sqlite:///{os.environ['SCENARIO_DATA']}/test.db", connect_args={"check_same_thread": False}
)
TestingSessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)


def override_get_db() -> Iterator[Session]:
    db = TestingSessionLocal()
    try:
        yield db
    finally:
        db.close()


app.dependency_overrides[get_db] = override_get_db


@pytest.fixture
def client() -> Iterator[TestClient]:
    Base.metadata.drop_all(bind=engine)
    Base.metadata.create_all(bind=engine)
    with TestingSessionLocal() as db:
        db.add(User(name="ada", scopes="users:read notes:write"))
        db.add(Note(text="welcome"))
        db.commit()
    with TestClient(app) as client:
        yield client
