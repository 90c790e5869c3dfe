"""The SQLAlchemy probe: engines, creation sites, statement attribution, values."""

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_scoped_session,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, scoped_session, sessionmaker

import depstrace
from depstrace import sqlalchemy as probe
from depstrace._session import TraceSession


def make_table(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY, name TEXT)"))
    engine.dispose()


def session_dependency(engine: sa.Engine) -> Callable[[], Iterator[Session]]:
    """A fresh ``get_db`` yield dependency handing out Sessions on ``engine``."""

    def get_db() -> Iterator[Session]:
        with Session(engine) as session:
            yield session

    return get_db


def test_engine_created_before_instrumentation_is_seen(
    sqlite_urls: dict[str, str], trace_file: Path
) -> None:
    """An import-time global engine (created before instrument) is registered on first use."""
    make_table(sqlite_urls["prod"])
    engine = sa.create_engine(sqlite_urls["prod"])
    app = FastAPI()

    @app.get("/count")
    def count() -> int:
        with Session(engine) as session:  # a global session outside Depends
            return int(session.execute(sa.text("SELECT count(*) FROM item")).scalar_one())

    session = depstrace.instrument(trace_file=trace_file)
    try:
        with TestClient(app) as client:
            assert client.get("/count").json() == 0
    finally:
        depstrace.uninstrument()
        engine.dispose()
    (record,) = session.requests
    (db,) = record["databases"]
    assert db["url"] == sqlite_urls["prod"]
    assert (db["statements"], db["operations"], db["via"], db["is_test"]) == (
        1,
        {"SELECT": 1},
        None,
        False,
    )
    assert db["created_at"] is None
    assert [f["code"] for f in record["findings"]] == ["WRONG_DB", "DI_BYPASS"]


def test_creation_site_and_phase_are_recorded(
    traced: TraceSession, sqlite_urls: dict[str, str]
) -> None:
    """create_engine under instrumentation records the calling file:line and the phase."""
    engine, line = sa.create_engine(sqlite_urls["test"]), sys._getframe().f_lineno
    info = probe.registry.lookup(engine)
    assert info.created_at == f"tests/test_sqlalchemy.py:{line}"
    assert info.created_phase in {"call", "runtime"}
    assert info.url == sqlite_urls["test"]
    assert info.database == "test_app.db"
    async_engine, line = create_async_engine(sqlite_urls["async_test"]), sys._getframe().f_lineno
    site = probe.registry.lookup(async_engine.sync_engine).created_at
    assert site == f"tests/test_sqlalchemy.py:{line}"
    engine.dispose()


def test_statements_are_attributed_to_the_dependency_that_provided_the_engine(
    traced: TraceSession, sqlite_urls: dict[str, str]
) -> None:
    """A yield dependency's Session is the request's path to its database (via), per engine."""
    make_table(sqlite_urls["test"])
    engine = sa.create_engine(sqlite_urls["test"])
    app = FastAPI()
    get_db = session_dependency(engine)

    @app.post("/items")
    def create(db: Annotated[Session, Depends(get_db)]) -> int:
        db.execute(sa.text("INSERT INTO item (name) VALUES ('a')"))
        db.commit()
        return int(db.execute(sa.text("SELECT count(*) FROM item")).scalar_one())

    with TestClient(app) as client:
        assert client.post("/items").json() == 1
    (record,) = traced.requests
    (db,) = record["databases"]
    assert db["via"] == "db"
    assert db["via_callable"].endswith("get_db")
    assert db["operations"] == {"INSERT": 1, "SELECT": 1}
    assert db["is_test"] is True
    assert record["dependencies"][0]["engine_id"] == db["engine_id"]
    assert record["dependencies"][0]["value"] == "sqlalchemy.orm.session:Session"
    assert record["findings"] == []
    engine.dispose()


def test_background_task_and_streaming_response_are_inside_the_request(
    traced: TraceSession, sqlite_urls: dict[str, str]
) -> None:
    """Queries from a background task and from a streaming body land on the request record."""
    make_table(sqlite_urls["prod"])
    prod = sa.create_engine(sqlite_urls["prod"])
    app = FastAPI()

    def audit() -> None:
        with prod.begin() as conn:
            conn.execute(sa.text("INSERT INTO item (name) VALUES ('audit')"))

    @app.post("/orders")
    def order(tasks: BackgroundTasks) -> str:
        tasks.add_task(audit)
        return "ok"

    @app.get("/export")
    def export() -> StreamingResponse:
        def rows() -> Iterator[bytes]:
            with prod.connect() as conn:
                for (name,) in conn.execute(sa.text("SELECT name FROM item")):
                    yield f"{name}\n".encode()

        return StreamingResponse(rows())

    with TestClient(app) as client:
        assert client.post("/orders").json() == "ok"
        assert client.get("/export").text == "audit\n"
    order_record, export_record = traced.requests
    assert order_record["databases"][0]["operations"] == {"INSERT": 1}
    assert export_record["databases"][0]["operations"] == {"SELECT": 1}
    assert [f["code"] for f in order_record["findings"]] == ["WRONG_DB", "DI_BYPASS"]
    prod.dispose()


def test_statements_outside_requests_are_recorded(
    traced: TraceSession, trace_file: Path, sqlite_urls: dict[str, str]
) -> None:
    """A statement run by a fixture or script (no request) becomes an outside_request record."""
    engine = sa.create_engine(sqlite_urls["prod"])
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    engine.dispose()
    depstrace.uninstrument()
    outside = [r for r in depstrace.read_records(trace_file) if r["type"] == "outside_request"]
    assert [(r["url"], r["statements"], r["operations"], r["is_test"]) for r in outside] == [
        (sqlite_urls["prod"], 1, {"SELECT": 1}, False)
    ]


def _async_values(url: str) -> dict[str, Any]:
    engine = create_async_engine(url)
    factory = async_sessionmaker(engine)
    return {
        "engine": engine,
        "session": AsyncSession(engine),
        "sessionmaker": factory,
        "scoped": async_scoped_session(factory, scopefunc=lambda: 1),
    }


def test_engine_of_every_sqlalchemy_value(sqlite_urls: dict[str, str]) -> None:
    """Session, sessionmaker, scoped_session, Engine, Connection and async twins map to one engine."""
    engine = sa.create_engine(sqlite_urls["test"])
    factory = sessionmaker(bind=engine)

    class Repository:
        def __init__(self, session: Session) -> None:
            self.session = session

    with engine.connect() as conn:
        values = [
            engine,
            conn,
            Session(engine),
            factory,
            scoped_session(factory),
            Repository(Session(engine)),
        ]
        assert [probe.engine_of(v) is engine for v in values] == [True] * len(values)
    async_values = _async_values(sqlite_urls["async_test"])
    sync_engine = async_values["engine"].sync_engine
    assert [probe.engine_of(v) is sync_engine for v in async_values.values()] == [True] * 4
    assert probe.engine_of(Session()) is None
    assert probe.engine_of("not a session") is None
    engine.dispose()


@pytest.mark.anyio
async def test_async_engine_through_asgi_transport(
    traced: TraceSession, sqlite_urls: dict[str, str]
) -> None:
    """An async session from an async generator dependency is attributed through sync_engine."""
    make_table(sqlite_urls["test"])
    engine = create_async_engine(sqlite_urls["async_test"])
    factory = async_sessionmaker(engine)
    app = FastAPI()

    async def get_db() -> AsyncIterator[AsyncSession]:
        async with factory() as session:
            yield session

    @app.get("/n")
    async def n(db: Annotated[AsyncSession, Depends(get_db)]) -> int:
        return int((await db.execute(sa.text("SELECT count(*) FROM item"))).scalar_one())

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await client.get("/n")).json() == 0
    await engine.dispose()
    (db,) = traced.requests[0]["databases"]
    assert (db["via"], db["is_test"], db["url"]) == ("db", True, sqlite_urls["async_test"])
    assert (
        traced.requests[0]["dependencies"][0]["value"]
        == "sqlalchemy.ext.asyncio.session:AsyncSession"
    )


def test_via_survives_a_dependency_that_raises(
    traced: TraceSession, sqlite_urls: dict[str, str]
) -> None:
    """When a later dependency raises, statements through an earlier one keep their via."""
    make_table(sqlite_urls["prod"])
    engine = sa.create_engine(sqlite_urls["prod"])
    app = FastAPI()
    get_db = session_dependency(engine)

    def current_user(db: Annotated[Session, Depends(get_db)]) -> str:
        db.execute(sa.text("SELECT name FROM item"))
        raise HTTPException(status_code=401, detail="who are you")

    @app.get("/me")
    def me(
        db: Annotated[Session, Depends(get_db)], user: Annotated[str, Depends(current_user)]
    ) -> str:
        return user

    with TestClient(app) as client:
        assert client.get("/me").status_code == 401
    (record,) = traced.requests
    assert [(d["name"], d["cached"], d["error"]) for d in record["dependencies"]] == [
        ("db", False, None),
        ("user", False, "fastapi.exceptions.HTTPException(401): who are you"),
        ("db", True, None),
    ]
    (db,) = record["databases"]
    assert (db["via"], db["statements"]) == ("db", 1)
    assert [f["code"] for f in record["findings"]] == ["WRONG_DB"]
    engine.dispose()
