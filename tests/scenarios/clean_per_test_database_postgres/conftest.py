"""Test setup done right: every test creates its own PostgreSQL database and drops it.

The test engine uses ``NullPool``: its tables are created from ``asyncio.run``
while requests run on the event loop of ``TestClient``, and pooled asyncpg
connections must not move between event loops.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from app.db import Base, get_db
from app.main import app
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

PG = os.environ["SCENARIO_PG"]  # user@host:port


def admin(sql: str) -> None:
    with psycopg.connect(f"postgresql://{PG}/postgres", autocommit=True) as conn:
        conn.execute(sql)


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


@pytest.fixture
def test_engine() -> Iterator[AsyncEngine]:
    name = f"depstrace_scn_test_{uuid.uuid4().hex[:12]}"
    admin(f'CREATE DATABASE "{name}"')
    engine = create_async_engine(f"postgresql+asyncpg://{PG}/{name}", poolclass=NullPool)
    try:
        asyncio.run(create_tables(engine))
        yield engine
    finally:
        asyncio.run(engine.dispose())
        admin(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def client(test_engine: AsyncEngine) -> Iterator[TestClient]:
    TestSessionLocal = async_sessionmaker(test_engine, expire_on_commit=False)

    async def override_get_db() -> AsyncIterator[AsyncSession]:
        async with TestSessionLocal() as session:
            yield session

    app.dependency_overrides[get_db] = override_get_db
    try:
        with TestClient(app) as client:
            yield client
    finally:
        app.dependency_overrides.clear()
