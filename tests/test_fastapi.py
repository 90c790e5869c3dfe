"""The solver wrapper: one record per Depends node, through real HTTP."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Security, WebSocket
from fastapi.security import SecurityScopes
from fastapi.testclient import TestClient

from depstrace._session import TraceSession


def by_name(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The dependencies of a request record keyed by name."""
    return {d["name"]: d for d in record["dependencies"]}


def settings() -> dict[str, str]:
    return {"env": "prod"}


def get_user(cfg: Annotated[dict[str, str], Depends(settings)]) -> str:
    return "ada"


async def get_items(
    user: Annotated[str, Depends(get_user)], cfg: Annotated[dict[str, str], Depends(settings)]
) -> list[str]:
    return [user, cfg["env"]]


def gen_resource() -> Iterator[str]:
    yield "sync-gen"


async def agen_resource() -> AsyncIterator[str]:
    yield "async-gen"


class Pager:
    def __init__(self, size: int = 10) -> None:
        self.size = size

    async def __call__(self) -> int:
        return self.size


pager = Pager(5)


def scoped_user(scopes: SecurityScopes) -> str:
    return ",".join(scopes.scopes)


def make_app() -> FastAPI:
    app = FastAPI(title="solver")

    @app.get("/items")
    async def items(
        data: Annotated[list[str], Depends(get_items)],
        g: Annotated[str, Depends(gen_resource)],
        ag: Annotated[str, Depends(agen_resource)],
        page: Annotated[int, Depends(pager)],
        cls: Annotated[Pager, Depends(Pager)],
    ) -> dict[str, Any]:
        return {"data": data, "g": g, "ag": ag, "page": page, "cls": cls.size}

    @app.get("/secure")
    def secure(
        a: Annotated[str, Security(scoped_user, scopes=["read"])],
        b: Annotated[str, Depends(scoped_user)],
    ) -> list[str]:
        return [a, b]

    @app.get("/boom")
    def boom(user: Annotated[str, Depends(failing)]) -> str:
        return user

    @app.get("/denied")
    def denied(user: Annotated[str, Depends(forbidden)]) -> str:
        return user

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: Annotated[str, Depends(get_user)]) -> None:
        await websocket.accept()
        await websocket.send_text(user)
        await websocket.close()

    return app


def failing() -> str:
    raise RuntimeError("token expired for postgresql://u:hunter2@db/prod")


def forbidden() -> str:
    raise HTTPException(status_code=403, detail="not yours")


def test_every_depends_node_is_recorded_with_parent_kind_and_cache(traced: TraceSession) -> None:
    """A nested tree yields one node per Depends with parent links, kinds and cache hits."""
    with TestClient(make_app()) as client:
        assert client.get("/items").status_code == 200
    (record,) = traced.requests
    summary = [
        (d["name"], d["original"].rpartition(".")[2], d["parent"], d["cached"], d["kind"])
        for d in record["dependencies"]
    ]
    assert summary == [
        ("data", "test_fastapi:get_items", None, False, "async"),
        ("user", "test_fastapi:get_user", 0, False, "sync"),
        ("cfg", "test_fastapi:settings", 1, False, "sync"),
        ("cfg", "test_fastapi:settings", 0, True, "sync"),
        ("g", "test_fastapi:gen_resource", None, False, "generator"),
        ("ag", "test_fastapi:agen_resource", None, False, "async_generator"),
        ("page", "test_fastapi:Pager()", None, False, "async"),
        ("cls", "test_fastapi:Pager", None, False, "sync"),
    ]
    nodes = by_name(record)
    assert nodes["page"]["callable_type"] == "instance"
    assert nodes["cls"]["callable_type"] == "class"
    assert nodes["cls"]["value"] == "tests.test_fastapi:Pager" or nodes["cls"]["value"].endswith(
        "test_fastapi:Pager"
    )
    assert all(
        d["duration_ms"] is not None and d["duration_ms"] >= 0 for d in record["dependencies"]
    )
    assert all(not d["overridden"] and d["error"] is None for d in record["dependencies"])
    assert record["route"] == "/items"
    assert record["endpoint"].endswith("make_app.<locals>.items")
    assert record["status"] == 200
    assert record["provider"]["title"] == "solver"
    assert nodes["data"]["original_site"].endswith(
        f"test_fastapi.py:{get_items.__code__.co_firstlineno}"
    )


def test_override_records_original_and_resolved(traced: TraceSession) -> None:
    """An override shows the original callable, the override that ran and overridden=True."""
    app = make_app()

    def fake_user() -> str:
        return "test-user"

    app.dependency_overrides[get_user] = fake_user
    with TestClient(app) as client:
        assert client.get("/items").json()["data"] == ["test-user", "prod"]
    nodes = traced.requests[0]["dependencies"]
    user = nodes[1]
    assert (user["name"], user["overridden"]) == ("user", True)
    assert user["original"].endswith("test_fastapi:get_user")
    assert user["resolved"].endswith(
        "test_override_records_original_and_resolved.<locals>.fake_user"
    )
    # The override has no sub-dependency, so settings is solved once, for get_items.
    assert [d["name"] for d in nodes] == ["data", "user", "cfg", "g", "ag", "page", "cls"]
    assert (nodes[2]["parent"], nodes[2]["cached"]) == (0, False)


def test_security_and_depends_get_separate_cache_keys(traced: TraceSession) -> None:
    """Security with scopes and plain Depends of one callable are two solves, not a cache hit."""
    with TestClient(make_app()) as client:
        assert client.get("/secure").json() == ["read", ""]
    a, b = traced.requests[0]["dependencies"]
    assert (a["name"], a["cached"], b["name"], b["cached"]) == ("a", False, "b", False)


def test_exception_in_dependency_is_recorded_on_that_node(traced: TraceSession) -> None:
    """A dependency that raises carries the (redacted) error; the request records the 500."""
    with TestClient(make_app(), raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
    (record,) = traced.requests
    (node,) = record["dependencies"]
    assert node["error"] == "RuntimeError: token expired for postgresql://u:***@db/prod"
    assert record["status"] == 500
    assert record["error"] == "RuntimeError: token expired for postgresql://u:***@db/prod"


def test_http_exception_in_dependency(traced: TraceSession) -> None:
    """An HTTPException from a dependency is recorded with its status and detail."""
    with TestClient(make_app()) as client:
        assert client.get("/denied").status_code == 403
    (node,) = traced.requests[0]["dependencies"]
    assert node["error"] == "fastapi.exceptions.HTTPException(403): not yours"
    assert traced.requests[0]["status"] == 403
    assert traced.requests[0]["error"] is None


def test_websocket_dependencies_are_recorded(traced: TraceSession) -> None:
    """A websocket route's Depends tree is recorded like an HTTP one."""
    with TestClient(make_app()) as client, client.websocket_connect("/ws") as websocket:
        assert websocket.receive_text() == "ada"
    (record,) = traced.requests
    assert (record["kind"], record["method"], record["path"], record["status"]) == (
        "websocket",
        "WEBSOCKET",
        "/ws",
        101,
    )
    assert [d["name"] for d in record["dependencies"]] == ["user", "cfg"]


def test_mounted_sub_app_is_its_own_provider(traced: TraceSession) -> None:
    """A route in a mounted app reports that app as provider; the parent's override is unused."""
    parent = FastAPI(title="parent")
    child = FastAPI(title="admin")

    @child.get("/who")
    def who(user: Annotated[str, Depends(get_user)]) -> str:
        return user

    parent.mount("/admin", child)
    parent.dependency_overrides[get_user] = lambda: "test-user"
    with TestClient(parent) as client:
        assert client.get("/admin/who").json() == "ada"
    (record,) = traced.requests
    assert record["path"] == "/admin/who"
    assert record["route"] == "/admin/who"
    assert record["app"]["title"] == "admin"
    assert record["provider"]["title"] == "admin"
    assert [a["title"] for a in record["apps"]] == ["parent", "admin"]
    assert record["apps"][1] == record["app"]
    assert record["dependencies"][0]["overridden"] is False


def test_route_template_carries_include_prefixes(traced: TraceSession) -> None:
    """``route`` is the full template, include and mount prefixes included, for nested and
    twice-included routers, router-level dependencies and websockets, on every FastAPI."""
    items = APIRouter(prefix="/items", dependencies=[Depends(settings)])

    @items.get("/{item_id:int}")
    def item(item_id: int, user: Annotated[str, Depends(get_user)]) -> int:
        return item_id

    @items.websocket("/feed/{room}")
    async def feed(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        await websocket.close()

    admin = APIRouter(prefix="/admin")
    admin.include_router(items, prefix="/v1")
    app = FastAPI(title="shop")
    app.include_router(admin, prefix="/api")
    app.include_router(items, prefix="/public")
    sub = FastAPI(title="partner")
    sub.include_router(admin, prefix="/p")
    app.mount("/partners", sub)
    with TestClient(app) as client:
        for path in ("/api/admin/v1/items/1", "/public/items/2", "/partners/p/admin/v1/items/3"):
            assert client.get(path).status_code == 200
        for path in ("/api/admin/v1/items/feed/a", "/partners/p/admin/v1/items/feed/b"):
            with client.websocket_connect(path):
                pass
    assert [(r["path"], r["route"], r["app"]["title"]) for r in traced.requests] == [
        ("/api/admin/v1/items/1", "/api/admin/v1/items/{item_id:int}", "shop"),
        ("/public/items/2", "/public/items/{item_id:int}", "shop"),
        ("/partners/p/admin/v1/items/3", "/partners/p/admin/v1/items/{item_id:int}", "partner"),
        ("/api/admin/v1/items/feed/a", "/api/admin/v1/items/feed/{room}", "shop"),
        ("/partners/p/admin/v1/items/feed/b", "/partners/p/admin/v1/items/feed/{room}", "partner"),
    ]
    # The router-level dependency is solved first, then the route's own.
    assert [d["name"] for d in traced.requests[0]["dependencies"]] == ["settings", "user", "cfg"]


@pytest.mark.anyio
async def test_concurrent_requests_keep_separate_records(traced: TraceSession) -> None:
    """100 concurrent requests through ASGITransport produce 100 correct, separate records."""
    app = FastAPI()

    async def slow_user(n: int) -> int:
        await asyncio.sleep(0.001 * (n % 7))
        return n

    @app.get("/n/{n}")
    async def echo(n: int, user: Annotated[int, Depends(slow_user)]) -> int:
        await asyncio.sleep(0)
        return user

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        responses = await asyncio.gather(*(client.get(f"/n/{i}") for i in range(100)))
    assert sorted(r.json() for r in responses) == list(range(100))
    assert len(traced.requests) == 100
    for record in traced.requests:
        (node,) = record["dependencies"]
        assert node["name"] == "user"
        assert record["route"] == "/n/{n}"
    assert len({r["id"] for r in traced.requests}) == 100
