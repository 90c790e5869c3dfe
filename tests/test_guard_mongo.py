"""Guard mode for pymongo: a refused write command never reaches the server (the
wire-protocol server of mongo_wire.py logs every command it receives)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mongo_wire import MongoWireServer
from pymongo import MongoClient, monitoring
from test_stores_mongo import SEED, make_app

import depstrace


@pytest.fixture
def server() -> Iterator[MongoWireServer]:
    """A fresh wire-protocol server holding a prod and a test database."""
    data = {db: {name: list(docs) for name, docs in colls.items()} for db, colls in SEED.items()}
    with MongoWireServer(data) as running:
        yield running


@pytest.mark.parametrize("mode", ["off", "writes"])
def test_a_refused_insert_never_reaches_the_server(
    server: MongoWireServer, trace_file: Path, mode: str
) -> None:
    """``writes``: the insert on prod is a 500 and the server never sees it, the find
    passes, ``allow_db`` lets the insert through; ``off``: nothing is patched."""
    original = monitoring._EventListeners.publish_command_start
    depstrace.instrument(trace_file=trace_file, guard=mode)
    patched = monitoring._EventListeners.publish_command_start is not original
    client: MongoClient[Any] = MongoClient(server.url("prod"), directConnection=True)
    try:
        app, _ = make_app(client)
        with TestClient(app, raise_server_exceptions=False) as http:
            assert http.get("/items").json() == ["real customer"]
            inserted = http.post("/items").status_code
            with depstrace.allow_db("prod"):
                allowed = http.post("/items").json()
    finally:
        client.close()
        session = depstrace.uninstrument()
    assert monitoring._EventListeners.publish_command_start is original
    inserts = [db for db, name in server.user_commands() if name == "insert"]
    assert session is not None
    if mode == "off":
        assert (patched, inserted, allowed, inserts) == (False, 200, 3, ["prod", "prod"])
        return
    assert (patched, inserted, allowed, inserts) == (True, 500, 2, ["prod"])
    refused = [r for r in depstrace.read_records(trace_file) if r["type"] == "guard"]
    assert [(r["action"], r["operation"], r["table"], r["url"]) for r in refused] == [
        ("refused", "INSERT", "items", f"mongodb://127.0.0.1:{server.port}/prod"),
        ("allowed", "INSERT", None, f"mongodb://127.0.0.1:{server.port}/prod"),
    ]
    assert [f["code"] for f in refused[0]["findings"]] == ["WRONG_DB"]
