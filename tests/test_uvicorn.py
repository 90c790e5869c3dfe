"""Real HTTP over a socket: uvicorn on 127.0.0.1 serving a traced app."""

import socket
import threading
import time
from collections.abc import Iterator
from typing import Annotated

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI

from depstrace import testing


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_app() -> FastAPI:
    app = FastAPI(title="served")

    def user() -> str:
        return "ada"

    @app.get("/hello")
    async def hello(name: Annotated[str, Depends(user)]) -> str:
        return name

    return app


@pytest.fixture
def server() -> Iterator[str]:
    """A uvicorn server in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        make_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_requests_served_by_uvicorn_are_recorded(server: str) -> None:
    """Requests through a real socket get records with their dependencies and the test id."""
    with testing.capture() as records:
        for _ in range(3):
            assert httpx.get(f"{server}/hello", timeout=5).json() == "ada"
        # A record closes just after its response was sent: the client can be faster.
        deadline = time.monotonic() + 10
        while len(records) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [(r["method"], r["route"], r["status"]) for r in records] == [("GET", "/hello", 200)] * 3
    assert records[0]["dependencies"][0]["name"] == "name"
    assert records[0]["test"] is None  # no plugin session here: in-process capture only
