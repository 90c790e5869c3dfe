"""The team's fixtures: a test PostgreSQL database and get_db overridden to use it."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from app import database
from app.database import Base, get_db
from app.main import app
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

PROD_DB, TEST_DB = f"depstrace_scn_prod_{database.RUN}", f"depstrace_scn_test_{database.RUN}"
PROVISION = [sys.executable, str(Path(__file__).with_name("provision.py"))]

engine = create_engine(f"postgresql+psycopg://{os.environ['SCENARIO_PG']}/{TEST_DB}")
TestingSessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)


def override_get_db() -> Iterator[Session]:
    db = TestingSessionLocal()
    try:
        yield db
    finally:
        db.close()


app.dependency_overrides[get_db] = override_get_db


@pytest.fixture(scope="session", autouse=True)
def databases() -> Iterator[None]:
    subprocess.run([*PROVISION, "up", PROD_DB, TEST_DB], check=True)
    yield
    engine.dispose()
    database.engine.dispose()
    subprocess.run([*PROVISION, "down", PROD_DB, TEST_DB], check=True)


@pytest.fixture
def client() -> Iterator[TestClient]:
    Base.metadata.drop_all(bind=engine)
    Base.metadata.create_all(bind=engine)
    with TestClient(app) as client:
        yield client
