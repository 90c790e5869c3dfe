"""A real PostgreSQL server through psycopg (sync) and asyncpg (async)."""

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import httpx
import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

import depstrace
from depstrace._session import TraceSession

pytestmark = pytest.mark.postgres


def test_psycopg_override_and_bypass(traced: TraceSession, postgres: dict[str, str]) -> None:
    """The overridden get_db reaches the test database; the module session reaches prod."""
    prod = sa.create_engine(postgres["psycopg_prod"], poolclass=NullPool)
    test = sa.create_engine(postgres["psycopg_test"], poolclass=NullPool)
    SessionLocal = sessionmaker(bind=prod)
    app = FastAPI(title="pg")

    def get_db() -> Iterator[Session]:
        with SessionLocal() as session:
            yield session

    def override() -> Iterator[Session]:
        with Session(test) as session:
            yield session

    @app.get("/db")
    def which(db: Annotated[Session, Depends(get_db)]) -> str:
        return str(db.execute(sa.text("SELECT current_database()")).scalar_one())

    @app.get("/global")
    def global_session() -> str:
        with SessionLocal() as session:
            return str(session.execute(sa.text("SELECT current_database()")).scalar_one())

    app.dependency_overrides[get_db] = override
    with TestClient(app) as client:
        assert client.get("/db").json() == "depstrace_test"
        assert client.get("/global").json() == "depstrace_prod"
    ok, leak = traced.requests
    assert [(d["database"], d["is_test"], d["via"]) for d in ok["databases"]] == [
        ("depstrace_test", True, "db")
    ]
    assert ok["findings"] == []
    assert [(d["database"], d["is_test"], d["via"]) for d in leak["databases"]] == [
        ("depstrace_prod", False, None)
    ]
    assert [f["code"] for f in leak["findings"]] == ["WRONG_DB", "DI_BYPASS"]
    assert leak["databases"][0]["url"] == postgres["psycopg_prod"]
    prod.dispose()
    test.dispose()


@pytest.mark.anyio
async def test_asyncpg_requests_are_attributed(
    traced: TraceSession, postgres: dict[str, str]
) -> None:
    """An asyncpg AsyncSession dependency is attributed to its engine and judged by name."""
    prod = create_async_engine(postgres["asyncpg_prod"], poolclass=NullPool)
    factory = async_sessionmaker(prod)
    app = FastAPI()

    async def get_db() -> AsyncIterator[AsyncSession]:
        async with factory() as session:
            yield session

    @app.get("/db")
    async def which(db: Annotated[AsyncSession, Depends(get_db)]) -> str:
        return str((await db.execute(sa.text("SELECT current_database()"))).scalar_one())

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await client.get("/db")).json() == "depstrace_prod"
    await prod.dispose()
    (record,) = traced.requests
    (db,) = record["databases"]
    assert (db["backend"], db["database"], db["via"], db["is_test"]) == (
        "postgresql",
        "depstrace_prod",
        "db",
        False,
    )
    assert [f["code"] for f in record["findings"]] == ["WRONG_DB"]
    assert record["dependencies"][0]["engine_id"] == db["engine_id"]


def test_password_never_reaches_the_trace(
    trace_file: object, postgres: dict[str, str], tmp_path: object
) -> None:
    """A URL with a password is recorded with *** everywhere in the trace file."""
    url = postgres["psycopg_prod"].replace("postgres@", "postgres:s3cr3t-pw@")
    session = depstrace.instrument(trace_file=trace_file)  # type: ignore[arg-type]
    engine = sa.create_engine(url, poolclass=NullPool)  # trust auth ignores the password
    app = FastAPI()

    @app.get("/")
    def root() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT 1")).scalar_one())

    with TestClient(app) as client:
        assert client.get("/").json() == 1
    depstrace.uninstrument()
    engine.dispose()
    text = trace_file.read_text()  # type: ignore[attr-defined]
    assert "s3cr3t-pw" not in text
    assert "postgres:***@" in text
    assert session.requests[0]["databases"][0]["url"].startswith(
        "postgresql+psycopg://postgres:***@"
    )
