"""Test setup: a test database, a ``get_db`` override, and a seeded "production" database."""

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

# Make ``import shop`` work whether pytest is started here or from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from shop import settings
from shop.db import Base, Item, get_db
from shop.main import app

T = TypeVar("T")

#: How many rows the pretend production database holds.
PROD_ITEMS = 731

# NullPool: these engines are used both from ``asyncio.run`` here and from the
# event loop TestClient runs in its own thread; pooled connections can't cross loops.
test_engine = create_async_engine(settings.TEST_DATABASE_URL, poolclass=NullPool)
TestSessionLocal = async_sessionmaker(test_engine, expire_on_commit=False)


async def override_get_db() -> AsyncIterator[AsyncSession]:
    async with TestSessionLocal() as session:
        yield session


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run async setup code from a sync fixture."""
    return asyncio.run(coro)


async def _ensure_pg_database(url: str) -> None:
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username or "postgres",
        password=u.password,
        database="postgres",
        timeout=5,
    )
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", u.database):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # created concurrently
                await conn.execute(f'CREATE DATABASE "{u.database}"')
    finally:
        await conn.close()


async def _seed_production() -> None:
    """Create the production tables and 731 items, unless they are already there."""
    engine = create_async_engine(settings.DATABASE_URL, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            if not await conn.scalar(select(func.count()).select_from(Item)):
                await conn.execute(
                    insert(Item),
                    [{"name": f"product {n}", "price": n % 50 + 0.99} for n in range(PROD_ITEMS)],
                )
    finally:
        await engine.dispose()


async def _reset_test_database() -> None:
    async with test_engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)


@pytest.fixture(scope="session", autouse=True)
def databases() -> None:
    """Make sure both databases exist; the production one holds 731 items."""
    for url in (settings.DATABASE_URL, settings.TEST_DATABASE_URL):
        if make_url(url).get_backend_name() != "postgresql":
            continue
        try:
            run(_ensure_pg_database(url))
        except (OSError, asyncio.TimeoutError) as exc:
            pytest.skip(f"PostgreSQL server for {make_url(url)} is not reachable: {exc!r}")
    run(_seed_production())


@pytest.fixture
def test_db() -> Iterator[None]:
    """Point ``get_db`` at a freshly created test database for one test."""
    run(_reset_test_database())
    app.dependency_overrides[get_db] = override_get_db
    yield
    app.dependency_overrides.clear()


@pytest.fixture
def client(test_db: None) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client
