"""MongoDB through real pymongo clients talking to the wire-protocol server in mongo_wire.py."""

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from mongo_wire import MongoWireServer
from pymongo import MongoClient, monitoring
from pymongo.database import Database

import depstrace
from depstrace import stores
from depstrace._session import TraceSession
from depstrace.sqlalchemy import engine_of
from depstrace.stores import mongo

SEED = {
    "prod": {"items": [{"_id": 1, "name": "real customer"}]},
    "app_test": {"items": [{"_id": 1, "name": "fixture item"}]},
}
FIELDS = ("url", "backend", "database", "host", "port", "is_test", "statements", "operations")


@pytest.fixture
def server() -> Iterator[MongoWireServer]:
    """A fresh wire-protocol server holding a prod and a test database."""
    data = {db: {name: list(docs) for name, docs in colls.items()} for db, colls in SEED.items()}
    with MongoWireServer(data) as running:
        yield running


@pytest.fixture
def prod_client(server: MongoWireServer) -> Iterator[MongoClient[Any]]:
    """The application's client, configured for production (as at import time)."""
    client: MongoClient[Any] = MongoClient(server.url("prod"), directConnection=True)
    yield client
    client.close()


@pytest.fixture
def test_client(server: MongoWireServer) -> Iterator[MongoClient[Any]]:
    """The client the test suite's override hands out."""
    client: MongoClient[Any] = MongoClient(server.url("app_test"), directConnection=True)
    yield client
    client.close()


def make_app(prod_client: MongoClient[Any]) -> tuple[FastAPI, Any]:
    """A FastAPI app whose get_db yields the production database; /bypass ignores it."""
    app = FastAPI(title="mongo app")

    def get_db() -> Database[Any]:
        return prod_client.get_default_database()

    @app.get("/items")
    def items(db: Annotated[Database[Any], Depends(get_db)]) -> list[str]:
        return [doc["name"] for doc in db.items.find({})]

    @app.get("/count")
    def count(db: Annotated[Database[Any], Depends(get_db)]) -> int:
        return db.items.count_documents({})

    @app.post("/items")
    def add(db: Annotated[Database[Any], Depends(get_db)]) -> int:
        db.items.insert_one({"name": "new"})
        return db.items.count_documents({})

    @app.get("/bypass")
    def bypass() -> list[str]:
        documents = list(prod_client["prod"].items.find({}))
        return [doc["name"] for doc in documents]

    return app, get_db


def summary(db: dict[str, Any]) -> dict[str, Any]:
    """The fields of a ``databases[]`` entry these tests compare."""
    return {field: db[field] for field in FIELDS}


def expected(server: MongoWireServer, database: str, **fields: Any) -> dict[str, Any]:
    """The ``databases[]`` summary of ``database`` on ``server``."""
    return {
        "url": f"mongodb://127.0.0.1:{server.port}/{database}",
        "backend": "mongodb",
        "database": database,
        "host": "127.0.0.1",
        "port": server.port,
        "is_test": "test" in database,
        **fields,
    }


def test_override_reaches_the_test_database_and_bypass_is_flagged(
    prod_client: MongoClient[Any],
    test_client: MongoClient[Any],
    server: MongoWireServer,
    traced: TraceSession,
) -> None:
    """The overridden dependency's commands land on app_test with ``via``; the
    route that uses the module-level client is WRONG_DB and DI_BYPASS on prod."""
    app, get_db = make_app(prod_client)

    def get_test_db() -> Database[Any]:
        return test_client.get_default_database()

    app.dependency_overrides[get_db] = get_test_db
    with TestClient(app) as client:
        assert client.get("/items").json() == ["fixture item"]
        assert client.post("/items").json() == 2
        assert client.get("/bypass").json() == ["real customer"]
    items, added, bypass = traced.requests
    assert [summary(d) | {"via": d["via"]} for d in items["databases"]] == [
        expected(server, "app_test", statements=1, operations={"FIND": 1}, via="db")
    ]
    assert items["dependencies"][0]["engine_id"] == items["databases"][0]["engine_id"]
    assert items["dependencies"][0]["value"] == "pymongo.synchronous.database:Database"
    assert items["findings"] == []
    assert [summary(d) | {"via": d["via"]} for d in added["databases"]] == [
        expected(
            server, "app_test", statements=2, operations={"INSERT": 1, "AGGREGATE": 1}, via="db"
        )
    ]
    assert [summary(d) | {"via": d["via"]} for d in bypass["databases"]] == [
        expected(server, "prod", statements=1, operations={"FIND": 1}, via=None)
    ]
    assert [f["code"] for f in bypass["findings"]] == ["WRONG_DB", "DI_BYPASS"]
    assert "test_stores_mongo.py:" in bypass["findings"][1]["message"]  # where it came from
    assert bypass["findings"][1]["message"].endswith("bypass().")
    assert server.user_commands() == [
        ("app_test", "find"),
        ("app_test", "insert"),
        ("app_test", "aggregate"),
        ("prod", "find"),
    ]


def test_without_override_the_dependency_is_wrong_db_but_no_bypass(
    prod_client: MongoClient[Any], server: MongoWireServer, traced: TraceSession
) -> None:
    """A dependency that yields the production database is WRONG_DB with its ``via``."""
    app, _ = make_app(prod_client)
    with TestClient(app) as client:
        assert client.get("/count").json() == 1
    (record,) = traced.requests
    (db,) = record["databases"]
    assert (db["database"], db["via"], db["operations"]) == ("prod", "db", {"AGGREGATE": 1})
    assert [f["code"] for f in record["findings"]] == ["WRONG_DB"]


@pytest.mark.anyio
async def test_async_client_override_and_bypass(
    server: MongoWireServer, traced: TraceSession
) -> None:
    """pymongo's AsyncMongoClient is traced in the request's task, override and bypass alike."""
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase

    prod: AsyncMongoClient[Any] = AsyncMongoClient(server.url("prod"), directConnection=True)
    test: AsyncMongoClient[Any] = AsyncMongoClient(server.url("app_test"), directConnection=True)
    app = FastAPI()

    async def get_db() -> AsyncDatabase[Any]:
        return prod.get_default_database()

    @app.get("/items")
    async def items(db: Annotated[AsyncDatabase[Any], Depends(get_db)]) -> list[str]:
        return [doc["name"] async for doc in db.items.find({})]

    @app.get("/bypass")
    async def bypass() -> int:
        return await prod["prod"].items.count_documents({})

    async def override() -> AsyncDatabase[Any]:
        return test.get_default_database()

    app.dependency_overrides[get_db] = override
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await client.get("/items")).json() == ["fixture item"]
        assert (await client.get("/bypass")).json() == 1
    await prod.close()
    await test.close()
    overridden, bypassed = traced.requests
    assert [summary(d) | {"via": d["via"]} for d in overridden["databases"]] == [
        expected(server, "app_test", statements=1, operations={"FIND": 1}, via="db")
    ]
    assert overridden["findings"] == []
    assert [summary(d) | {"via": d["via"]} for d in bypassed["databases"]] == [
        expected(server, "prod", statements=1, operations={"AGGREGATE": 1}, via=None)
    ]
    assert [f["code"] for f in bypassed["findings"]] == ["WRONG_DB", "DI_BYPASS"]


def test_driver_bookkeeping_is_not_counted(
    server: MongoWireServer, trace_file: Path, traced: TraceSession
) -> None:
    """Handshakes, ping, endSessions and transaction control are not statements; a find
    outside a request is."""
    client: MongoClient[Any] = MongoClient(server.url(), directConnection=True)
    client.admin.command("ping")
    client.admin.command("commitTransaction")
    client.admin.command("abortTransaction")
    assert client.prod.items.find_one({"_id": 1}) == {"_id": 1, "name": "real customer"}
    client.close()  # sends endSessions
    depstrace.uninstrument()
    assert ("admin", "endSessions") in server.commands
    assert ("admin", "commitTransaction") in server.commands
    outside = [r for r in depstrace.read_records(trace_file) if r["type"] == "outside_request"]
    assert [(r["url"], r["is_test"], r["statements"], r["operations"]) for r in outside] == [
        (f"mongodb://127.0.0.1:{server.port}/prod", False, 1, {"FIND": 1})
    ]


def test_values_map_to_their_store(
    prod_client: MongoClient[Any], server: MongoWireServer, traced: TraceSession
) -> None:
    """Clients (with a default database), databases and collections map to one store."""
    values = [prod_client, prod_client["prod"], prod_client["prod"].items]
    infos = [engine_of(value) for value in values]
    assert [getattr(info, "url", None) for info in infos] == [server.url("prod")] * 3
    assert len({id(info) for info in infos}) == 1
    nameless: MongoClient[Any] = MongoClient(server.url(), directConnection=True, connect=False)
    assert engine_of(nameless) is None  # no database in its URL: it names none
    assert engine_of(nameless["app_test"]).database == "app_test"  # type: ignore[union-attr]
    nameless.close()


def test_uninstrument_leaves_one_inert_listener(
    server: MongoWireServer, trace_file: Path, tmp_path: Path
) -> None:
    """The listener is registered once per process and counts nothing once uninstrumented."""

    def ours() -> int:
        listeners = monitoring._LISTENERS.command_listeners
        return sum(type(x).__name__ == "DepstraceCommandListener" for x in listeners)

    depstrace.instrument(trace_file=trace_file)
    assert "pymongo" in stores.instrumented_drivers()
    depstrace.uninstrument()
    depstrace.instrument(trace_file=tmp_path / "second.jsonl")
    depstrace.uninstrument()
    assert ours() == 1
    assert stores.instrumented_drivers() == frozenset()
    client: MongoClient[Any] = MongoClient(server.url("prod"), directConnection=True)
    client.prod.items.find_one()
    client.close()
    assert ("prod", "find") in server.commands
    assert mongo._stores == {}  # an active listener would have registered prod


def test_drivers_load_lazily_and_old_clients_are_seen(server: MongoWireServer) -> None:
    """In a fresh process: importing depstrace or instrumenting imports no driver, a
    pymongo imported later is instrumented on import, and a client created before
    depstrace first attached is counted too."""
    script = textwrap.dedent(
        f"""
        import sys
        import depstrace
        from depstrace import stores

        session = depstrace.instrument(trace_file=None)
        print(sorted(m for m in ("pymongo", "motor", "asyncpg", "psycopg") if m in sys.modules))
        import pymongo
        print(sorted(stores.instrumented_drivers()))
        client = pymongo.MongoClient("{server.url()}", directConnection=True)
        client.lazy_test.items.find_one()
        depstrace.uninstrument()
        early = pymongo.MongoClient("{server.url()}", directConnection=True)  # before attach
        session = depstrace.instrument(trace_file=None)
        early.early_test.items.find_one()
        depstrace.uninstrument()
        print(len(session.engines), sorted(e["database"] for e in session.engines.values()))
        client.close()
        early.close()
        """
    )
    fresh = textwrap.dedent(
        f"""
        import pymongo
        import depstrace

        early = pymongo.MongoClient("{server.url()}", directConnection=True)
        session = depstrace.instrument(trace_file=None)
        early.early_test.items.find_one()
        depstrace.uninstrument()
        early.close()
        print(sorted(e["database"] for e in session.engines.values()))
        """
    )
    lines = [_run(script).splitlines(), _run(fresh).splitlines()]
    assert lines == [["[]", "['pymongo']", "1 ['early_test']"], ["['early_test']"]]


def _run(script: str) -> str:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("address", "url"),
    [
        (("db.internal", 27017, "app"), "mongodb://db.internal:27017/app"),
        (("::1", 27017, "app_test"), "mongodb://[::1]:27017/app_test"),
        (("/tmp/mongodb-27017.sock", None, "app"), "mongodb://%2Ftmp%2Fmongodb-27017.sock/app"),
    ],
)
def test_store_urls(address: tuple[str, Any, str], url: str) -> None:
    """Store URLs name the server and the database, socket paths escaped."""
    assert mongo.store_url(*address) == url
