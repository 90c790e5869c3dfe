"""Shared fixtures: a traced session, real SQLite files, real PostgreSQL and MariaDB servers."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import depstrace
from depstrace._session import TraceSession

PG_HOST = os.environ.get("DEPSTRACE_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DEPSTRACE_PG_PORT", "5432"))
PG_USER = os.environ.get("DEPSTRACE_PG_USER", "postgres")
PG_TEST_DB = "depstrace_test"
PG_PROD_DB = "depstrace_prod"


@pytest.fixture(autouse=True)
def _serial_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees the environment of a serial run, also under ``pytest -n 2``.

    A pytest-xdist worker sets its own variables (and execnet sets ``COLUMNS=80``,
    ``LINES=24``); they would pass to every pytester or launcher subprocess, where
    depstrace would write a worker's file and print no account, or wrap the account
    at 80 columns.
    """
    names = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")
    for name in (*names, "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _never_leave_instrumented() -> Iterator[None]:
    """Every test starts and ends with depstrace uninstrumented."""
    assert not depstrace.is_instrumented(), "a previous test left depstrace instrumented"
    yield
    depstrace.uninstrument()


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    """Where the traced session writes its JSON Lines."""
    return tmp_path / "trace.jsonl"


@pytest.fixture
def traced(trace_file: Path) -> Iterator[TraceSession]:
    """depstrace instrumented for one test, writing to ``trace_file``."""
    session = depstrace.instrument(trace_file=trace_file)
    yield session
    depstrace.uninstrument()


@pytest.fixture(scope="session")
def make_prod_dir() -> Iterator[Callable[[], Path]]:
    """Make directories for "production" SQLite files outside pytest's temporary
    directories (where any SQLite file is a test database by the default rule);
    all are removed at the end of the session."""
    made: list[Path] = []

    def make() -> Path:
        made.append(Path(tempfile.mkdtemp(prefix="depstrace-prod-")))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def prod_dir(make_prod_dir: Callable[[], Path]) -> Path:
    """A fresh directory for "production" SQLite files, outside pytest's temporary ones."""
    return make_prod_dir()


@pytest.fixture
def sqlite_urls(tmp_path: Path, prod_dir: Path) -> dict[str, str]:
    """Sync and async URLs of a real test and a real "production" SQLite file."""
    return {
        "test": f"sqlite:///{tmp_path / 'test_app.db'}",
        "prod": f"sqlite:///{prod_dir / 'prod.db'}",
        "async_test": f"sqlite+aiosqlite:///{tmp_path / 'test_app.db'}",
        "async_prod": f"sqlite+aiosqlite:///{prod_dir / 'prod.db'}",
    }


def _pg_reachable() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a test dependency
        return "psycopg is not installed"
    try:
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3
        ) as conn:
            conn.autocommit = True
            for name in (PG_TEST_DB, PG_PROD_DB):
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if exists.fetchone() is None:
                    conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        return f"PostgreSQL at {PG_HOST}:{PG_PORT} is not usable: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres() -> dict[str, str]:
    """URLs of two real PostgreSQL databases (test and "production")."""
    reason = _pg_reachable()
    if reason is not None:
        if os.environ.get("DEPSTRACE_REQUIRE_PG") == "1":
            pytest.fail(f"DEPSTRACE_REQUIRE_PG=1 but {reason}")
        pytest.skip(reason)
    base = f"{PG_USER}@{PG_HOST}:{PG_PORT}"
    return {
        "psycopg_test": f"postgresql+psycopg://{base}/{PG_TEST_DB}",
        "psycopg_prod": f"postgresql+psycopg://{base}/{PG_PROD_DB}",
        "asyncpg_test": f"postgresql+asyncpg://{base}/{PG_TEST_DB}",
        "asyncpg_prod": f"postgresql+asyncpg://{base}/{PG_PROD_DB}",
    }


MYSQL_HOST = os.environ.get("DEPSTRACE_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("DEPSTRACE_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("DEPSTRACE_MYSQL_USER", "root")
MYSQL_DB = os.environ.get("DEPSTRACE_MYSQL_DB", "test")


@pytest.fixture(scope="session")
def mysql() -> str:
    """``user@host:port/database`` of a real MySQL or MariaDB server (empty password)."""
    try:
        import pymysql

        pymysql.connect(
            host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, database=MYSQL_DB, connect_timeout=3
        ).close()
    except Exception as exc:
        reason = f"MySQL/MariaDB at {MYSQL_HOST}:{MYSQL_PORT} is not usable: {exc}"
        if os.environ.get("DEPSTRACE_REQUIRE_MYSQL") == "1":
            pytest.fail(f"DEPSTRACE_REQUIRE_MYSQL=1 but {reason}")
        pytest.skip(reason)
    return f"{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/{MYSQL_DB}"


@pytest.fixture
def anyio_backend() -> str:
    """Run anyio-marked tests on asyncio only."""
    return "asyncio"


# Scenario apps and account suites run in their own pytester subprocess
# (tests/test_scenarios.py, tests/test_account.py), never here.
collect_ignore = ["scenarios", "accounts"]
