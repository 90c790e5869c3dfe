"""The team's fixtures: DATABASE_URL names the test database before the app is imported."""

import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

# Scenario plumbing: the suite may run several times at once against one server,
# so each run gets its own database.
TEST_DB = f"depstrace_scn_loop_test_{zlib.crc32(os.environ['SCENARIO_DATA'].encode()):08x}"

os.environ["DATABASE_URL"] = f"postgresql+asyncpg://{os.environ['SCENARIO_PG']}/{TEST_DB}"

from app import app  # noqa: E402

PROVISION = [sys.executable, str(Path(__file__).with_name("provision.py"))]


@pytest.fixture(scope="session", autouse=True)
def database() -> Iterator[None]:
    subprocess.run([*PROVISION, "up", TEST_DB], check=True)
    yield
    subprocess.run([*PROVISION, "down", TEST_DB], check=True)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app) as client:  # a new event loop for this test
        yield client
