"""The span model in one process: websockets, unmatched routes, caller spans, run findings.

Each test instruments depstrace with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a
real OTLP/HTTP receiver on 127.0.0.1, drives a FastAPI app, uninstruments (which
flushes), and reads the spans back.  No ``from __future__ import annotations``
here: FastAPI reads the annotations of routes defined inside the tests.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, WebSocket
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from otlp_receiver import HttpReceiver, Span, outline, tree

import depstrace
from depstrace import _attributes as attr
from depstrace._context import restore_test_phase, set_test_phase
from depstrace._session import TraceSession


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpReceiver]:
    """A live OTLP/HTTP receiver that depstrace exports to."""
    for name in list(os.environ):
        if name.startswith(("DEPSTRACE", "OTEL_")):
            monkeypatch.delenv(name)
    with HttpReceiver() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.endpoint)
        yield running


@pytest.fixture
def session(receiver: HttpReceiver, tmp_path: Path) -> Iterator[TraceSession]:
    """depstrace instrumented for one test; uninstrumenting flushes the spans."""
    yield depstrace.instrument(trace_file=tmp_path / "trace.jsonl")
    depstrace.uninstrument()


def settings() -> int:
    return 7


def app_with_routes() -> FastAPI:
    """A websocket route and an HTTP route, both with a dependency."""
    app = FastAPI(title="inproc")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, value: Annotated[int, Depends(settings)]) -> None:
        await websocket.accept()
        await websocket.send_json(value)
        await websocket.close()

    @app.get("/n")
    async def n(value: Annotated[int, Depends(settings)]) -> int:
        return value

    return app


def no_global_provider() -> bool:
    """Whether this process has no tracer provider of its own (then depstrace claims SERVER)."""
    provider = trace.get_tracer_provider()
    return isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def test_websocket_session_is_one_span(session: TraceSession, receiver: HttpReceiver) -> None:
    """A websocket session gets a span named after its route, status 101, its dependency below."""
    with TestClient(app_with_routes()) as client, client.websocket_connect("/ws") as ws:
        assert ws.receive_json() == 7
    depstrace.uninstrument()
    (root,) = tree(receiver.spans)
    assert outline(root) == (
        "WEBSOCKET /ws",
        "SERVER",
        [("test_spans_inprocess:settings", "INTERNAL", [])],
    )
    assert root.attributes[attr.HTTP_RESPONSE_STATUS_CODE] == 101
    assert root.attributes[attr.HTTP_ROUTE] == "/ws"
    assert attr.HTTP_REQUEST_METHOD not in root.attributes
    assert attr.TEST_ID not in root.attributes


def test_unmatched_route_still_gets_a_request_span(
    session: TraceSession, receiver: HttpReceiver
) -> None:
    """A 404 never reaches the solver and still gets its SERVER span, in the file's trace id."""
    if not no_global_provider():
        pytest.skip("a global tracer provider is installed in this process")
    with TestClient(app_with_routes()) as client:
        assert client.get("/missing").status_code == 404
    depstrace.uninstrument()
    (root,) = tree(receiver.spans)
    assert outline(root) == ("GET /missing", "SERVER", [])
    assert root.attributes[attr.HTTP_RESPONSE_STATUS_CODE] == 404
    assert attr.HTTP_ROUTE not in root.attributes
    assert session.requests[0]["trace_id"] == root.trace_id


@pytest.mark.anyio
async def test_caller_span_is_the_parent(session: TraceSession, receiver: HttpReceiver) -> None:
    """A request made inside the caller's own span (httpx.ASGITransport, same task) is its child."""
    caller = TracerProvider(shutdown_on_exit=False)  # the test's own, never installed globally
    transport = httpx.ASGITransport(app=app_with_routes())
    with caller.get_tracer("test").start_as_current_span("checkout flow") as outer:
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            assert (await client.get("/n")).json() == 7
    depstrace.uninstrument()
    caller.shutdown()
    (request,) = [s for s in receiver.spans if s.kind == "SERVER"]
    context = outer.get_span_context()
    assert request.trace_id == f"{context.trace_id:032x}"
    assert request.parent_id == f"{context.span_id:016x}"
    assert session.requests[0]["trace_id"] == request.trace_id


def test_run_findings_become_events(session: TraceSession, receiver: HttpReceiver) -> None:
    """A finding of the running test is an event on its span; one outside tests goes on
    a ``depstrace.run`` span."""
    nodeid = "test_x.py::test_leak"
    session.test_started(nodeid, ("test_x.py", 4, "test_leak"))
    previous = set_test_phase(nodeid, "call")
    try:
        session.add_run_finding(
            {"code": "OVERRIDE_LEAKED", "severity": "warning", "message": "leaked", "test": nodeid}
        )
    finally:
        restore_test_phase(previous)
    session.test_finished(nodeid, "failed")
    session.add_run_finding({"code": "DB_OUTSIDE_REQUEST", "severity": "error", "message": "m"})
    depstrace.uninstrument()
    spans: dict[str, Span] = {s.name: s for s in receiver.spans}
    test = spans[nodeid]
    assert test.events == [
        (
            attr.FINDING_EVENT,
            {
                attr.FINDINGS: "OVERRIDE_LEAKED",
                attr.FINDING_CODE: "OVERRIDE_LEAKED",
                attr.FINDING_SEVERITY: "warning",
                attr.FINDING_MESSAGE: "leaked",
            },
        )
    ]
    assert test.attributes[attr.FINDINGS] == ["OVERRIDE_LEAKED"]
    assert test.attributes[attr.TEST_OUTCOME] == "failed"
    assert test.status == ("ERROR", "test failed")
    assert test.attributes[attr.CODE_LINE_NUMBER] == 5
    run = spans[attr.RUN_SPAN]
    assert run.parent_id is None
    assert [e[1][attr.FINDING_CODE] for e in run.events] == ["DB_OUTSIDE_REQUEST"]


def test_unfinished_test_span_ends_with_the_run(
    session: TraceSession, receiver: HttpReceiver
) -> None:
    """A test span still open when tracing stops is ended and says so."""
    session.test_started("test_x.py::test_cut", ("test_x.py", 0, "test_cut"))
    depstrace.uninstrument()
    (span,) = receiver.spans
    assert span.attributes[attr.TEST_OUTCOME] == "unfinished"
    assert span.end >= span.start


def test_no_spans_after_uninstrument(session: TraceSession, receiver: HttpReceiver) -> None:
    """After uninstrument, requests make no span and reach no collector."""
    depstrace.uninstrument()
    before = len(receiver.requests)
    with TestClient(app_with_routes()) as client:
        assert client.get("/n").json() == 7
    assert len(receiver.requests) == before
    assert receiver.spans == []
