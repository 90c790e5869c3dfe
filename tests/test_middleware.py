"""DepstraceMiddleware added by hand: Starlette apps, and no double records."""

from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from depstrace import DepstraceMiddleware, testing


def test_middleware_records_a_plain_starlette_app() -> None:
    """A Starlette app wrapped in DepstraceMiddleware gets one record per request."""

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi", status_code=201)

    app = DepstraceMiddleware(Starlette(routes=[Route("/hi", hello)]))
    with testing.capture() as records, TestClient(app) as client:
        assert client.get("/hi").text == "hi"
    assert [(r["method"], r["path"], r["status"], r["dependencies"]) for r in records] == [
        ("GET", "/hi", 201, [])
    ]


def test_middleware_on_a_fastapi_app_does_not_double_record() -> None:
    """Added to an (auto-traced) FastAPI app, the middleware yields to the outer record."""
    app = FastAPI(title="twice")
    app.add_middleware(DepstraceMiddleware)

    @app.get("/")
    def root(x: Annotated[int, Depends(lambda: 7)]) -> int:
        return x

    with testing.capture() as records, TestClient(app) as client:
        assert client.get("/").json() == 7
    (record,) = records
    assert [a["title"] for a in record["apps"]] == ["twice"]
    assert len(record["dependencies"]) == 1


def test_middleware_passes_through_when_not_instrumented() -> None:
    """Without instrumentation the middleware is a transparent wrapper."""

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    app = DepstraceMiddleware(Starlette(routes=[Route("/", hello)]))
    with TestClient(app) as client:
        assert client.get("/").text == "hi"
