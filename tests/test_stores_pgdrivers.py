"""asyncpg and psycopg used without SQLAlchemy, against the real PostgreSQL server."""

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import httpx
import psycopg
import pytest
import sqlalchemy as sa
from asyncpg import prepared_stmt
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import Pool

import depstrace
from depstrace import _failopen, stores
from depstrace._session import TraceSession
from depstrace.sqlalchemy import engine_of
from depstrace.stores import pgdrivers

pytestmark = pytest.mark.postgres
FIELDS = ("url", "backend", "database", "host", "port", "is_test", "statements", "operations")


@pytest.fixture
def dsn(postgres: dict[str, str]) -> dict[str, str]:
    """libpq URLs (no driver suffix) of the test and the production database."""
    return {
        "test": postgres["psycopg_test"].replace("+psycopg", ""),
        "prod": postgres["psycopg_prod"].replace("+psycopg", ""),
    }


def summary(db: dict[str, Any]) -> dict[str, Any]:
    """The fields of a ``databases[]`` entry these tests compare, with ``via``."""
    return {field: db[field] for field in (*FIELDS, "via")}


def expected(url: str, **fields: Any) -> dict[str, Any]:
    """The ``databases[]`` summary of the store whose URL is ``url``."""
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    database = url.rsplit("/", 1)[1]
    return {
        "url": url,
        "backend": "postgresql",
        "database": database,
        "host": host,
        "port": int(port),
        "is_test": database == "depstrace_test",
        **fields,
    }


def make_app(settings: dict[str, str], prod: str) -> tuple[FastAPI, Any]:
    """An app with an asyncpg pool built in its lifespan from ``settings``, a psycopg
    connection dependency that opens production by default, and two routes that
    open their own production connection."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(settings["database_url"], min_size=1)
        await app.state.pool.execute("SELECT 1")  # a warm-up statement outside any request
        yield
        await app.state.pool.close()

    app = FastAPI(title="drivers", lifespan=lifespan)

    def get_pool(request: Request) -> asyncpg.Pool:
        return request.app.state.pool  # type: ignore[no-any-return]

    def get_conn() -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(prod) as conn:
            yield conn

    @app.get("/pool")
    async def from_pool(pool: Annotated[asyncpg.Pool, Depends(get_pool)]) -> str:
        return str(await pool.fetchval("SELECT current_database()"))

    @app.get("/transaction")
    async def transaction(pool: Annotated[asyncpg.Pool, Depends(get_pool)]) -> list[int]:
        async with pool.acquire() as conn, conn.transaction():
            statement = await conn.prepare("SELECT $1::int")
            values = [await statement.fetchval(1), await statement.fetchval(2)]
            await conn.execute("SELECT 3")
        return values

    @app.get("/conn")
    def from_conn(conn: Annotated[psycopg.Connection[Any], Depends(get_conn)]) -> str:
        with conn.transaction():
            row = conn.execute("SELECT current_database()").fetchone()
        with conn.cursor() as cursor:
            cursor.executemany("SELECT %s", [(1,), (2,)])
        return str(row[0]) if row else ""

    @app.get("/escape")
    def escape() -> str:
        with psycopg.connect(prod) as conn:
            row = conn.execute("SELECT current_database()").fetchone()
        return str(row[0]) if row else ""

    @app.get("/escape-async")
    async def escape_async() -> str:
        conn = await asyncpg.connect(prod)
        try:
            return str(await conn.fetchval("SELECT current_database()"))
        finally:
            await conn.close()

    return app, get_conn


def test_pool_connection_dependency_and_escapes(
    dsn: dict[str, str], postgres: dict[str, str], trace_file: Path, traced: TraceSession
) -> None:
    """The lifespan pool and the overridden psycopg dependency reach the test database
    with their ``via``; connections opened in the routes are WRONG_DB and DI_BYPASS."""
    app, get_conn = make_app({"database_url": dsn["test"]}, dsn["prod"])

    def get_test_conn() -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(dsn["test"]) as conn:
            yield conn

    app.dependency_overrides[get_conn] = get_test_conn
    with TestClient(app) as client:
        assert client.get("/pool").json() == "depstrace_test"
        assert client.get("/transaction").json() == [1, 2]
        assert client.get("/conn").json() == "depstrace_test"
        assert client.get("/escape").json() == "depstrace_prod"
        assert client.get("/escape-async").json() == "depstrace_prod"
    pool, transaction, conn, escape, escape_async = traced.requests
    assert [summary(d) for d in pool["databases"]] == [
        expected(postgres["asyncpg_test"], statements=1, operations={"SELECT": 1}, via="pool")
    ]
    assert pool["dependencies"][0]["engine_id"] == pool["databases"][0]["engine_id"]
    # prepare() is not a statement; BEGIN/COMMIT and the pool's reset query are the driver's
    assert [summary(d) for d in transaction["databases"]] == [
        expected(postgres["asyncpg_test"], statements=3, operations={"SELECT": 3}, via="pool")
    ]
    assert [summary(d) for d in conn["databases"]] == [
        expected(postgres["psycopg_test"], statements=2, operations={"SELECT": 2}, via="conn")
    ]
    assert [r["findings"] for r in (pool, transaction, conn)] == [[], [], []]
    assert [summary(d) for d in escape["databases"]] == [
        expected(postgres["psycopg_prod"], statements=1, operations={"SELECT": 1}, via=None)
    ]
    assert [summary(d) for d in escape_async["databases"]] == [
        expected(postgres["asyncpg_prod"], statements=1, operations={"SELECT": 1}, via=None)
    ]
    assert [f["code"] for f in escape["findings"]] == ["WRONG_DB", "DI_BYPASS"]
    assert [f["code"] for f in escape_async["findings"]] == ["WRONG_DB", "DI_BYPASS"]
    assert "test_stores_pgdrivers.py:" in escape_async["findings"][1]["message"]  # where from
    assert escape_async["findings"][1]["message"].endswith("escape_async().")
    depstrace.uninstrument()
    outside = [r for r in depstrace.read_records(trace_file) if r["type"] == "outside_request"]
    assert [(r["url"], r["is_test"], r["operations"]) for r in outside] == [
        (postgres["asyncpg_test"], True, {"SELECT": 1})
    ]


def test_dependency_without_override_is_wrong_db_with_via(
    dsn: dict[str, str], postgres: dict[str, str], traced: TraceSession
) -> None:
    """The psycopg dependency left on production is WRONG_DB through ``conn``, no bypass."""
    app, _ = make_app({"database_url": dsn["test"]}, dsn["prod"])
    with TestClient(app) as client:
        assert client.get("/conn").json() == "depstrace_prod"
    (record,) = traced.requests
    assert [summary(d) for d in record["databases"]] == [
        expected(postgres["psycopg_prod"], statements=2, operations={"SELECT": 2}, via="conn")
    ]
    assert [f["code"] for f in record["findings"]] == ["WRONG_DB"]


def sqlalchemy_app(factory: Any, is_async: bool) -> FastAPI:
    """An app whose one route runs two statements through a SQLAlchemy session."""
    app = FastAPI()
    if is_async:

        async def get_db() -> AsyncIterator[AsyncSession]:
            async with factory() as session:
                yield session

        @app.get("/")
        async def root(db: Annotated[AsyncSession, Depends(get_db)]) -> int:
            await db.execute(sa.text("SELECT 1"))
            return int((await db.execute(sa.text("SELECT 2"))).scalar_one())

    else:

        def get_sync_db() -> Iterator[Session]:
            with factory() as session:
                yield session

        @app.get("/")
        def sync_root(db: Annotated[Session, Depends(get_sync_db)]) -> int:
            db.execute(sa.text("SELECT 1"))
            return int(db.execute(sa.text("SELECT 2")).scalar_one())

    return app


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["asyncpg_test", "psycopg_test"])
async def test_sqlalchemy_async_statements_are_counted_once(
    postgres: dict[str, str], url: str, traced: TraceSession
) -> None:
    """SQLAlchemy's async dialects drive asyncpg and psycopg's AsyncConnection: each
    statement counts once, on the SQLAlchemy engine."""
    engine = create_async_engine(postgres[url], pool_pre_ping=True)
    app = sqlalchemy_app(async_sessionmaker(engine), is_async=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert [(await client.get("/")).json() for _ in range(2)] == [2, 2]
    await engine.dispose()
    assert [[(d["url"], d["statements"]) for d in r["databases"]] for r in traced.requests] == [
        [(postgres[url], 2)]
    ] * 2
    assert [e["created_at"] is not None for e in traced.engines.values()] == [True]


def test_sqlalchemy_psycopg_statements_are_counted_once(
    postgres: dict[str, str], trace_file: Path
) -> None:
    """SQLAlchemy's psycopg dialect, including a connection pooled before instrumentation."""
    engine = sa.create_engine(postgres["psycopg_test"], pool_size=1)
    with engine.connect() as conn:  # this connection waits in the pool, unseen by depstrace
        conn.execute(sa.text("SELECT 0"))
    session = depstrace.instrument(trace_file=trace_file)
    app = sqlalchemy_app(sessionmaker(engine), is_async=False)
    with TestClient(app) as client:
        assert [client.get("/").json() for _ in range(2)] == [2, 2]
    depstrace.uninstrument()
    engine.dispose()
    assert [[(d["url"], d["statements"]) for d in r["databases"]] for r in session.requests] == [
        [(postgres["psycopg_test"], 2)]
    ] * 2
    assert len(session.engines) == 1


@pytest.mark.anyio
async def test_values_map_to_their_store(
    dsn: dict[str, str], postgres: dict[str, str], traced: TraceSession
) -> None:
    """Connections, pool connections, pools and cursors map to the store they use;
    a driver connection that SQLAlchemy drives maps to none."""
    conn = await asyncpg.connect(dsn["test"])
    pool = await asyncpg.create_pool(dsn["prod"], min_size=1, max_size=1)
    sync_conn = psycopg.connect(dsn["test"])
    async_conn = await psycopg.AsyncConnection.connect(dsn["prod"])
    engine = create_async_engine(postgres["asyncpg_test"])
    async with pool.acquire() as proxy, engine.connect() as sa_conn:
        raw = (await sa_conn.get_raw_connection()).driver_connection
        urls = [
            getattr(engine_of(value), "url", None)
            for value in (conn, pool, proxy, sync_conn, sync_conn.cursor(), async_conn, raw)
        ]
    assert urls == [
        postgres["asyncpg_test"],
        postgres["asyncpg_prod"],
        postgres["asyncpg_prod"],
        postgres["psycopg_test"],
        postgres["psycopg_test"],
        postgres["psycopg_prod"],
        None,
    ]
    await engine.dispose()
    await conn.close()
    await pool.close()
    sync_conn.close()
    await async_conn.close()


def patched_objects() -> dict[str, object]:
    """Every driver attribute depstrace patches, as it is now."""
    return {
        "Connection.fetch": asyncpg.Connection.fetch,
        "Connection.execute": asyncpg.Connection.execute,
        "Connection.reset": asyncpg.Connection.reset,
        "Connection.copy_to_table": asyncpg.Connection.copy_to_table,
        "PreparedStatement.fetchval": prepared_stmt.PreparedStatement.fetchval,
        "Cursor.execute": psycopg.Cursor.execute,
        "Cursor.stream": psycopg.Cursor.stream,
        "AsyncCursor.executemany": psycopg.AsyncCursor.executemany,
        "ServerCursor.execute": psycopg.ServerCursor.execute,
    }


def test_uninstrument_restores_the_drivers(trace_file: Path) -> None:
    """After uninstrument every patched driver method is the original again (is),
    and the SQLAlchemy pool listeners are gone."""
    before = patched_objects()
    depstrace.instrument(trace_file=trace_file)
    during = patched_objects()
    assert {"asyncpg", "psycopg"} <= stores.instrumented_drivers()
    assert [during[name] is before[name] for name in before] == [False] * len(before)
    assert sa.event.contains(Pool, "checkout", pgdrivers._sqlalchemy_connection)
    depstrace.uninstrument()
    after = patched_objects()
    assert [after[name] is before[name] for name in before] == [True] * len(before)
    assert not sa.event.contains(Pool, "checkout", pgdrivers._sqlalchemy_connection)
    assert "ClientCursor" not in str(vars(psycopg.ClientCursor).get("execute"))


@pytest.mark.anyio
async def test_passwords_never_reach_the_trace(dsn: dict[str, str], trace_file: Path) -> None:
    """Connections opened with a password are recorded without it."""
    session = depstrace.instrument(trace_file=trace_file)
    with_password = dsn["prod"].replace("postgres@", "postgres:s3cr3t-pw@")
    conn = await asyncpg.connect(with_password)  # trust auth ignores the password
    await conn.fetchval("SELECT 1")
    await conn.close()
    async with await psycopg.AsyncConnection.connect(with_password) as async_conn:
        await async_conn.execute("SELECT 1")
    depstrace.uninstrument()
    assert "s3cr3t-pw" not in trace_file.read_text()
    assert sorted(e["url"] for e in session.engines.values()) == [
        with_password.replace(
            "postgresql://postgres:s3cr3t-pw@", f"postgresql+{driver}://postgres@"
        )
        for driver in ("asyncpg", "psycopg")
    ]


def test_a_connection_depstrace_cannot_read_still_works(
    dsn: dict[str, str], traced: TraceSession
) -> None:
    """When the connection's parameters cannot be read, the statement runs anyway
    and the error is counted, not raised."""

    class Unreadable(psycopg.Connection[Any]):
        @property
        def info(self) -> Any:
            raise RuntimeError("no info today")

    before = _failopen.internal_errors["driver statement hook"]
    with Unreadable.connect(dsn["test"]) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    assert _failopen.internal_errors["driver statement hook"] == before + 1
    assert traced.engines == {}


def test_drivers_are_instrumented_when_imported_later() -> None:
    """In a fresh process neither import depstrace nor instrument() imports a driver;
    importing one afterwards patches it, and uninstrument removes patch and watcher."""
    script = textwrap.dedent(
        """
        import sys
        import depstrace
        from depstrace import stores

        depstrace.instrument(trace_file=None)
        print(sorted(m for m in ("asyncpg", "psycopg", "pymongo") if m in sys.modules))
        import asyncpg
        import psycopg
        print(sorted(stores.instrumented_drivers()))
        print(hasattr(asyncpg.Connection.fetch, "__wrapped__"),
              hasattr(psycopg.Cursor.execute, "__wrapped__"))
        depstrace.uninstrument()
        print(hasattr(asyncpg.Connection.fetch, "__wrapped__"),
              hasattr(psycopg.Cursor.execute, "__wrapped__"),
              any(type(f).__name__ == "_ImportWatcher" for f in sys.meta_path))
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[]",
        "['asyncpg', 'psycopg']",
        "True True",
        "False False False",
    ]


@pytest.mark.parametrize(
    ("args", "url"),
    [
        (
            ("asyncpg", "db.internal", 6432, "app", "svc"),
            "postgresql+asyncpg://svc@db.internal:6432/app",
        ),
        (("psycopg", "::1", 5432, "app_test", None), "postgresql+psycopg://[::1]:5432/app_test"),
        (
            ("psycopg", "/run/postgresql", 5432, "app", "me@corp"),
            "postgresql+psycopg://me%40corp@/app?host=/run/postgresql&port=5432",
        ),
    ],
)
def test_store_urls(args: tuple[Any, ...], url: str) -> None:
    """Store URLs carry user, host, port and database; sockets go to ?host=."""
    assert pgdrivers.store_url(*args) == url


@pytest.mark.anyio
async def test_unix_socket_connections(postgres: dict[str, str], traced: TraceSession) -> None:
    """Connections over the server's UNIX socket are stores with the socket directory as host."""
    user, port_text = postgres["psycopg_test"].split("://")[1].split("/")[0].split("@")
    port = int(port_text.rsplit(":", 1)[1])
    directory = "/var/run/postgresql"
    if not Path(directory, f".s.PGSQL.{port}").exists():
        pytest.skip(f"no PostgreSQL socket in {directory}")
    conn = await asyncpg.connect(host=directory, port=port, user=user, database="depstrace_test")
    await conn.fetchval("SELECT 1")
    await conn.close()
    async with await psycopg.AsyncConnection.connect(
        host=directory, port=port, user=user, dbname="depstrace_test"
    ) as async_conn:
        await async_conn.execute("SELECT 1")
    assert sorted(
        (e["url"], e["host"], e["port"], e["is_test"]) for e in traced.engines.values()
    ) == [
        (
            f"postgresql+{driver}://{user}@/depstrace_test?host={directory}&port={port}",
            directory,
            port,
            True,
        )
        for driver in ("asyncpg", "psycopg")
    ]
