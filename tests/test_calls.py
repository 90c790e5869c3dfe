"""Outbound calls (depstrace.calls): real HTTP, Redis and moto's S3, fakes, EXTERNAL_CALL.

Every call goes to something real on this machine: a threaded ``http.server``
on 127.0.0.1, Redis on 127.0.0.1:6379 (skipped when it is down, unless
``DEPSTRACE_REQUIRE_REDIS=1``), moto's in-process S3.  The external host is a
``.invalid`` name (RFC 2606: it never resolves), so the call fails to connect
after depstrace has recorded it, and no test needs the internet.  No
``from __future__ import annotations``: FastAPI reads the routes' annotations.
"""

import asyncio
import contextlib
import http.server
import json
import os
import socket
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import fakeredis
import httpx
import mongomock
import pytest
import redis
import redis.asyncio
import requests
import requests_mock
import responses
from botocore.client import BaseClient
from fastapi import FastAPI
from fastapi.testclient import TestClient
from moto import mock_aws

import depstrace
from depstrace._context import restore_test_phase, set_test_phase
from depstrace._session import TraceSession
from depstrace.calls import AllowList, Target, is_loopback

EXTERNAL = "http://api.weather.invalid:8081/v1/today?token=s3cret"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_GET

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def local_http() -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 answering every GET and POST with JSON."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _redis_down() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            pass
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
    except Exception as exc:
        return f"no Redis on 127.0.0.1:6379 ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="module")
def real_redis() -> None:
    """Redis on 127.0.0.1:6379, or a skip that says why (a failure under CI's
    ``DEPSTRACE_REQUIRE_REDIS=1``)."""
    reason = _redis_down()
    if reason is None:
        return
    if os.environ.get("DEPSTRACE_REQUIRE_REDIS") == "1":
        pytest.fail(f"DEPSTRACE_REQUIRE_REDIS=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TraceSession]:
    """depstrace instrumented with the default allow-list."""
    monkeypatch.delenv("DEPSTRACE_ALLOW_HOSTS", raising=False)
    yield depstrace.instrument(trace_file=tmp_path / "trace.jsonl")
    depstrace.uninstrument()


def _call(**fields: Any) -> dict[str, Any]:
    """A ``calls[]`` entry: ``fields`` over the nulls."""
    base: dict[str, Any] = {
        "scheme": None,
        "host": None,
        "port": None,
        "database": None,
        "service": None,
        "bucket": None,
        "fake": None,
        "allowed": True,
    }
    return base | fields


def _trace_text(session: TraceSession) -> str:
    """The trace file as written so far."""
    session.flush()
    assert session.writer is not None
    return Path(session.writer.path).read_text()


def _records(session: TraceSession) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _trace_text(session).splitlines()]


def _only(session: TraceSession) -> dict[str, Any]:
    (request,) = session.requests
    return request


# -- HTTP ------------------------------------------------------------------------------


def test_httpx_and_requests_to_a_local_server(session: TraceSession, local_http: str) -> None:
    """httpx (sync and async) and requests calls from a route are listed with scheme,
    host, port and method; the path and its query string are not recorded."""
    app = FastAPI()
    port = int(local_http.rpartition(":")[2])

    @app.get("/sync")
    def sync_route() -> int:
        httpx.get(f"{local_http}/a?token=secret")
        httpx.post(f"{local_http}/b", headers={"Authorization": "Bearer secret-token"})
        requests.get(f"http://user:pw@127.0.0.1:{port}/c?api_key=secret", timeout=5)
        return 1

    @app.get("/async")
    async def async_route() -> int:
        async with httpx.AsyncClient() as client:
            await client.get(f"{local_http}/d")
        return 2

    with TestClient(app) as client:
        assert client.get("/sync").json() == 1
        assert client.get("/async").json() == 2
    first, second = session.requests
    http = {"system": "http", "scheme": "http", "host": "127.0.0.1", "port": port}
    target = f"http://127.0.0.1:{port}"
    assert first["calls"] == [
        _call(**http, library="httpx", count=2, operations={"GET": 1, "POST": 1}, target=target),
        _call(**http, library="requests", count=1, operations={"GET": 1}, target=target),
    ]
    assert second["calls"] == [
        _call(**http, library="httpx", count=1, operations={"GET": 1}, target=target)
    ]
    assert [f["code"] for r in session.requests for f in r["findings"]] == []
    text = _trace_text(session)
    assert ("secret" in text, "user:pw" in text, "pw@" in text) == (False, False, False)


def test_test_transports_are_fakes(session: TraceSession) -> None:
    """httpx's MockTransport, WSGITransport and ASGITransport answer in process: fakes,
    allowed whatever their host."""
    other = FastAPI()

    @other.get("/x")
    async def x() -> int:
        return 3

    def wsgi(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"4"]

    app = FastAPI()

    @app.get("/fakes")
    async def fakes() -> int:
        mocked = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
        mocked.get("https://api.payments.example/charge")
        httpx.Client(transport=httpx.WSGITransport(app=wsgi)).get("http://wsgi.example/")
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://asgi.example") as c:
            assert (await c.get("/x")).json() == 3
        return 0

    with TestClient(app) as client:
        client.get("/fakes")
    calls = session.requests[-1]["calls"]
    assert [(c["host"], c["fake"], c["allowed"]) for c in calls] == [
        ("api.payments.example", "httpx.MockTransport", True),
        ("wsgi.example", "httpx.WSGITransport", True),
        ("asgi.example", "httpx.ASGITransport", True),
    ]
    assert calls[0]["target"] == "https://api.payments.example:443 (fake: httpx.MockTransport)"
    assert session.requests[-1]["findings"] == []


def test_responses_answers_requests_as_a_fake(session: TraceSession) -> None:
    """A call the responses library answers (it replaces HTTPAdapter.send) is a fake."""
    app = FastAPI()

    @app.get("/r")
    def route() -> int:
        return int(requests.get("https://api.example.com/n", timeout=5).json())

    with responses.RequestsMock() as mocked:
        mocked.add(responses.GET, "https://api.example.com/n", json=5)
        with TestClient(app) as client:
            assert client.get("/r").json() == 5
    (call,) = _only(session)["calls"]
    assert (call["host"], call["fake"], call["allowed"]) == ("api.example.com", "responses", True)


def test_requests_mock_answers_as_a_fake(session: TraceSession) -> None:
    """requests-mock, as a Mocker (it patches Session.get_adapter) or as an adapter mounted
    on a session, is a fake."""
    app = FastAPI()

    @app.get("/mocker")
    def mocker_route() -> int:
        return int(requests.get("https://api.example.com/n", timeout=5).json())

    @app.get("/mounted")
    def mounted_route() -> int:
        mounted = requests.Session()
        adapter = requests_mock.Adapter()
        adapter.register_uri("GET", "https://inventory.example/n", json=2)
        mounted.mount("https://inventory.example", adapter)
        return int(mounted.get("https://inventory.example/n").json())

    with TestClient(app) as client:
        with requests_mock.Mocker() as mocker:
            mocker.get("https://api.example.com/n", json=5)
            assert client.get("/mocker").json() == 5
        assert client.get("/mounted").json() == 2
    assert [(c["host"], c["fake"]) for r in session.requests for c in r["calls"]] == [
        ("api.example.com", "requests_mock"),
        ("inventory.example", "requests_mock.adapter.Adapter"),
    ]
    assert [f for r in session.requests for f in r["findings"]] == []


# -- EXTERNAL_CALL -----------------------------------------------------------------------


def _weather_app() -> FastAPI:
    app = FastAPI()

    @app.get("/weather")
    def weather() -> str:
        try:
            httpx.get(EXTERNAL, timeout=2)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return "answered"

    return app


def test_an_external_host_is_an_external_call(session: TraceSession) -> None:
    """A host that is not loopback, not a fake and not allowed makes EXTERNAL_CALL; the
    call is recorded before it is sent, so a call that cannot connect still counts."""
    with TestClient(_weather_app()) as client:
        assert client.get("/weather").json() == "ConnectError"
    request = _only(session)
    assert request["calls"] == [
        _call(
            system="http",
            library="httpx",
            scheme="http",
            host="api.weather.invalid",
            port=8081,
            allowed=False,
            count=1,
            operations={"GET": 1},
            target="http://api.weather.invalid:8081",
        )
    ]
    (finding,) = request["findings"]
    assert finding == {
        "code": "EXTERNAL_CALL",
        "severity": "error",
        "message": (
            "GET /weather called http://api.weather.invalid:8081 (GET 1) through httpx: "
            "api.weather.invalid is not a loopback host, the call went to no fake or test "
            "transport, and DEPSTRACE_ALLOW_HOSTS does not allow it: the code under test "
            "called a real outside service (recorded before sending, whether or not it "
            "answered)"
        ),
        "hint": (
            "Give the code that makes this call a test double: override the dependency "
            "that provides the client, or use httpx.MockTransport, responses/requests-mock, "
            "moto or fakeredis; if the tests may reach this host, allow it with "
            "DEPSTRACE_ALLOW_HOSTS=api.weather.invalid."
        ),
        "engine_id": None,
    }


def test_an_opentelemetry_exporter_sending_is_no_call_of_the_app(session: TraceSession) -> None:
    """An app's own span exporter sending to its collector while a request runs (the
    SDK's SimpleSpanProcessor exports as each span ends) is telemetry, not a call of the
    code under test: no calls[], no EXTERNAL_CALL for the collector's host; the app's
    own call in the same request still is one."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class CollectorExporter(SpanExporter):
        sent = 0

        def export(self, spans: Any) -> SpanExportResult:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post("http://otel-collector.invalid:4318/v1/traces", timeout=2)
            CollectorExporter.sent += 1
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(CollectorExporter()))
    tracer = provider.get_tracer("the-app")
    app = _weather_app()

    @app.get("/traced")
    def traced() -> str:
        with tracer.start_as_current_span("work"):
            pass
        return "ok"

    with TestClient(app) as client:
        assert client.get("/traced").json() == "ok"
        assert client.get("/weather").json() == "ConnectError"
    assert CollectorExporter.sent == 1
    traced_request, weather = session.requests
    assert traced_request["calls"] == []
    assert traced_request["findings"] == []
    assert [c["host"] for c in weather["calls"]] == ["api.weather.invalid"]
    provider.shutdown()


def _local_host_name() -> str:
    """This machine's host name when it resolves to a loopback address here (``/etc/hosts``)
    and is not itself loopback-named; else a skip."""
    name = socket.gethostname().lower()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, socket.AF_INET)}
    except OSError as exc:
        pytest.skip(f"the host name {name!r} does not resolve here: {exc}")
    if is_loopback(name) or not addresses or not all(is_loopback(a) for a in addresses):
        pytest.skip(f"the host name {name!r} resolves to {sorted(addresses)}, not only loopback")
    return name


@pytest.mark.parametrize("allow", ["", "{name}"])
def test_an_answered_call_to_a_named_host(
    allow: str, local_http: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host is judged by its name, never resolved: this machine's name maps to
    127.0.0.1, the local server answers, and still the call is external unless
    DEPSTRACE_ALLOW_HOSTS names it."""
    name = _local_host_name()
    port = int(local_http.rpartition(":")[2])
    monkeypatch.setenv("DEPSTRACE_ALLOW_HOSTS", allow.format(name=name))
    session = depstrace.instrument(trace_file=tmp_path / "t.jsonl")
    app = FastAPI()

    @app.get("/named")
    def named() -> bool:
        return bool(httpx.get(f"http://{name}:{port}/x", timeout=5).json()["ok"])

    with TestClient(app) as client:
        assert client.get("/named").json() is True
    depstrace.uninstrument()
    request = _only(session)
    assert [(c["host"], c["allowed"]) for c in request["calls"]] == [(name, bool(allow))]
    assert [f["code"] for f in request["findings"]] == ([] if allow else ["EXTERNAL_CALL"])


@pytest.mark.parametrize("allowed", ["api.weather.invalid", "*.invalid", "x, *.INVALID:8081"])
def test_allow_hosts_allows_it(
    allowed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEPSTRACE_ALLOW_HOSTS patterns (fnmatch, any case, host or host:port) allow it."""
    monkeypatch.setenv("DEPSTRACE_ALLOW_HOSTS", allowed)
    session = depstrace.instrument(trace_file=tmp_path / "t.jsonl")
    with TestClient(_weather_app()) as client:
        client.get("/weather")
    depstrace.uninstrument()
    request = _only(session)
    assert [(c["host"], c["allowed"]) for c in request["calls"]] == [("api.weather.invalid", True)]
    assert request["findings"] == []


def test_allow_list_rules() -> None:
    """Loopback names and addresses, fakes and UNIX sockets are allowed; a look-alike
    name is not."""
    allow = AllowList(("*.corp.internal", "minio:9000"))

    def ok(host: str | None, port: int | None = 443, fake: str | None = None) -> bool:
        return allow.allows(Target("http", "httpx", host, port, scheme="https", fake=fake))

    assert [
        ok("localhost"),
        ok("api.localhost"),
        ok("127.0.0.2"),
        ok("::1"),
        ok("[::1]"),
        ok("0.0.0.0"),
        ok(None),
        ok("api.example.com", fake="httpx.MockTransport"),
        ok("billing.corp.internal"),
        ok("minio", 9000),
    ] == [True] * 10
    assert [
        ok("localhost.example.com"),
        ok("10.0.0.1"),
        ok("minio", 9001),
        ok("corp.internal"),
    ] == [False] * 4
    assert (is_loopback("127.255.0.1"), is_loopback("128.0.0.1")) == (True, False)


def test_a_mock_patch_of_the_apps_own_function_is_not_a_call(session: TraceSession) -> None:
    """unittest.mock.patch of the app's HTTP helper means no call happens: none is recorded
    (depstrace sees calls, not intentions)."""
    app = FastAPI()

    def fetch_rate() -> float:
        return float(httpx.get(EXTERNAL, timeout=2).json())

    rates = types.SimpleNamespace(fetch_rate=fetch_rate)  # the app's own client module

    @app.get("/rate")
    def rate() -> float:
        return float(rates.fetch_rate())

    with mock.patch.object(rates, "fetch_rate", return_value=1.5), TestClient(app) as client:
        assert client.get("/rate").json() == 1.5
    request = _only(session)
    assert (request["calls"], request["findings"]) == ([], [])


def test_calls_outside_requests_are_recorded_per_test(session: TraceSession) -> None:
    """A call in a test's body (no request) lands in an ``outside_calls`` record of that
    test and phase, and an external one is a run finding naming the test."""
    previous = set_test_phase("tests/test_x.py::test_seed", "call")
    try:
        with pytest.raises(httpx.ConnectError):
            httpx.get(EXTERNAL, timeout=2)
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(204))).delete(
            "https://api.example.com/x"
        )
        records = _records(session)
    finally:
        restore_test_phase(previous)
    (outside,) = [r for r in records if r["type"] == "outside_calls"]
    assert {k: outside[k] for k in ("test", "phase", "fixture")} == {
        "test": "tests/test_x.py::test_seed",
        "phase": "call",
        "fixture": None,
    }
    assert [(c["host"], c["allowed"], c["operations"]) for c in outside["calls"]] == [
        ("api.weather.invalid", False, {"GET": 1}),
        ("api.example.com", True, {"DELETE": 1}),
    ]
    (finding,) = session.run_findings
    assert (finding["code"], finding["test"], finding["phase"]) == (
        "EXTERNAL_CALL",
        "tests/test_x.py::test_seed",
        "call",
    )
    assert finding["message"].startswith(
        "http://api.weather.invalid:8081 (GET 1) through httpx was called outside any "
        "request, during the call phase of tests/test_x.py::test_seed: "
    )
    assert finding["call"]["host"] == "api.weather.invalid"


# -- Redis ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("real_redis")
def test_real_redis_sync_and_asyncio(session: TraceSession) -> None:
    """Commands to the real Redis, sync and asyncio, pipelines included: host, port,
    database number and command names (never arguments)."""
    app = FastAPI()

    @app.get("/sync")
    def sync_route() -> str:
        client = redis.Redis(host="127.0.0.1", port=6379, db=3)
        client.set("depstrace:calls:k", "v", ex=60)
        pipe = client.pipeline()
        pipe.incr("depstrace:calls:n")
        pipe.expire("depstrace:calls:n", 60)
        pipe.execute()
        value = client.get("depstrace:calls:k")
        client.close()
        return (value or b"").decode()

    @app.get("/async")
    async def async_route() -> str:
        client = redis.asyncio.Redis(host="127.0.0.1", port=6379, db=5)
        await client.set("depstrace:calls:a", "w", ex=60)
        value = await client.get("depstrace:calls:a")
        await client.aclose()
        return (value or b"").decode()

    with TestClient(app) as client:
        assert client.get("/sync").json() == "v"
        assert client.get("/async").json() == "w"
    first, second = session.requests
    where = {"system": "redis", "library": "redis", "host": "127.0.0.1", "port": 6379}
    assert first["calls"] == [
        _call(
            **where,
            database=3,
            count=4,
            operations={"SET": 1, "INCRBY": 1, "EXPIRE": 1, "GET": 1},
            target="redis://127.0.0.1:6379/3",
        )
    ]
    assert second["calls"] == [
        _call(
            **where,
            database=5,
            count=2,
            operations={"SET": 1, "GET": 1},
            target="redis://127.0.0.1:6379/5",
        )
    ]
    text = _trace_text(session)
    assert "depstrace:calls" not in text  # keys are arguments: never recorded


def test_fakeredis_and_mongomock_are_fake_stores(session: TraceSession) -> None:
    """fakeredis (sync and asyncio) and mongomock are fakes; a request that used only
    them reached test stores, and the account says so."""
    app = FastAPI()

    @app.get("/cart")
    async def cart() -> int:
        sync = fakeredis.FakeRedis()
        sync.set("k", "1")
        fake = fakeredis.FakeAsyncRedis()
        await fake.incr("n")
        items = mongomock.MongoClient().shop.items
        items.insert_one({"sku": "a"})
        return len(list(items.find({}))) + (items.find_one({"sku": "a"}) is not None)

    with TestClient(app) as client:
        assert client.get("/cart").json() == 2
    request = _only(session)
    assert [(c["system"], c["fake"], c["database"], c["operations"]) for c in request["calls"]] == [
        ("redis", "fakeredis", 0, {"SET": 1, "INCRBY": 1}),
        ("mongodb", "mongomock", "shop", {"INSERT": 1, "FIND": 2}),
    ]
    assert all(c["allowed"] for c in request["calls"])
    from depstrace.report import summary_lines

    assert summary_lines(session.requests, trace_file=None)[0] == (
        "depstrace: 1 request, all on test databases."
    )


# -- AWS ------------------------------------------------------------------------------------------


def test_moto_s3_is_a_fake(session: TraceSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 under moto: service, operation, endpoint host and bucket, recorded as the
    fake ``moto``; outside a moto mock the same client is not a fake."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    app = FastAPI()

    @app.post("/upload")
    def upload() -> int:
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="shop-uploads")
        s3.put_object(Bucket="shop-uploads", Key="a.txt", Body=b"x")
        return len(s3.list_objects_v2(Bucket="shop-uploads")["Contents"])

    with mock_aws(), TestClient(app) as client:
        assert client.post("/upload").json() == 1
    (call,) = _only(session)["calls"]
    assert call == _call(
        system="aws",
        library="botocore",
        scheme="https",
        host="s3.amazonaws.com",
        port=443,
        service="s3",
        bucket="shop-uploads",
        fake="moto",
        count=3,
        operations={"CreateBucket": 1, "PutObject": 1, "ListObjectsV2": 1},
        target="AWS s3 at s3.amazonaws.com:443 (bucket shop-uploads) (fake: moto)",
    )


def test_boto3_without_moto_is_a_real_call(
    session: TraceSession, local_http: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without moto, a boto3 call to a local endpoint is real and allowed (loopback)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    previous = set_test_phase("tests/test_x.py::test_s3", "call")
    try:
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=local_http)
        s3.head_bucket(Bucket="local-bucket")  # the server answers 200 to everything
        records = _records(session)
    finally:
        restore_test_phase(previous)
    (outside,) = [r for r in records if r["type"] == "outside_calls"]
    assert [(c["service"], c["bucket"], c["fake"], c["allowed"]) for c in outside["calls"]] == [
        ("s3", "local-bucket", None, True)
    ]


# -- switching on and off -------------------------------------------------------------------


def _originals() -> dict[str, Any]:
    return {
        "httpx.HTTPTransport.handle_request": httpx.HTTPTransport.handle_request,
        "httpx.AsyncHTTPTransport.handle_async_request": (
            httpx.AsyncHTTPTransport.handle_async_request
        ),
        "httpx.MockTransport.handle_request": httpx.MockTransport.handle_request,
        "httpx.ASGITransport.handle_async_request": httpx.ASGITransport.handle_async_request,
        "requests.Session.send": requests.Session.send,
        "requests_mock.mocker._original_send": requests_mock.mocker._original_send,
        "redis.Redis.execute_command": redis.Redis.execute_command,
        "redis.client.Pipeline.execute": redis.client.Pipeline.execute,
        "redis.asyncio.Redis.execute_command": redis.asyncio.Redis.execute_command,
        "redis.asyncio.client.Pipeline.execute": redis.asyncio.client.Pipeline.execute,
        "BaseClient._make_api_call": BaseClient._make_api_call,
        "mongomock.Collection.find": mongomock.collection.Collection.find,
    }


def test_uninstrument_restores_every_original(tmp_path: Path) -> None:
    """instrument() patches each client library; uninstrument() puts back the very
    objects (``is``), and nothing is recorded afterwards."""
    before = _originals()
    session = depstrace.instrument(trace_file=None)
    during = _originals()
    assert [name for name in before if during[name] is before[name]] == []
    depstrace.uninstrument()
    after = _originals()
    assert [name for name in before if after[name] is not before[name]] == []
    assert (
        vars(httpx.HTTPTransport)["handle_request"] is before["httpx.HTTPTransport.handle_request"]
    )
    previous = set_test_phase("t.py::t", "call")
    try:
        fakeredis.FakeRedis().set("k", "v")
        session.flush()
    finally:
        restore_test_phase(previous)
    assert session.run_findings == []


def test_invisible(local_http: str, tmp_path: Path) -> None:
    """depstrace calls none of the standard-library functions its probes could use
    (a test may patch them): each is called as often traced as untraced."""
    names = [
        ("urllib.parse", "urlsplit"),
        ("fnmatch", "fnmatchcase"),
        ("ipaddress", "ip_address"),
        ("time", "perf_counter"),
        ("functools", "wraps"),
        ("socket", "gethostname"),
    ]

    def workload() -> dict[str, int]:
        mocks = {}
        patchers = []
        for module, name in names:
            target = __import__(module, fromlist=[name])
            patcher = mock.patch.object(target, name, wraps=getattr(target, name))
            mocks[f"{module}.{name}"] = patcher.start()
            patchers.append(patcher)
        try:
            httpx.get(f"{local_http}/a")
            requests.get(f"{local_http}/b", timeout=5)
            fakeredis.FakeRedis().set("k", "v")
            mongomock.MongoClient().db.c.insert_one({})
            asyncio.run(fakeredis.FakeAsyncRedis().get("k"))
        finally:
            for patcher in reversed(patchers):
                patcher.stop()
        return {name: m.call_count for name, m in mocks.items()}

    workload()  # first uses import and cache (fakeredis, mongomock): not what is compared
    untraced = workload()
    depstrace.instrument(trace_file=tmp_path / "t.jsonl")
    try:
        previous = set_test_phase("t.py::t", "call")
        try:
            traced = workload()
        finally:
            restore_test_phase(previous)
    finally:
        depstrace.uninstrument()
    assert traced == untraced


# -- spans ---------------------------------------------------------------------------------


def test_a_client_span_per_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_http: str
) -> None:
    """Each target a request called is a CLIENT span under the request span, with the
    semantic-convention attributes; an external one has status ERROR.  depstrace's own
    OTLP export (requests, to 127.0.0.1) is not a call of the app's."""
    from otlp_receiver import HttpReceiver

    for name in list(os.environ):
        if name.startswith(("DEPSTRACE", "OTEL_")):
            monkeypatch.delenv(name)
    app = FastAPI()

    @app.get("/mixed")
    def mixed() -> int:
        httpx.get(f"{local_http}/a")
        fakeredis.FakeRedis(db=2).set("k", "v")
        with mock_aws():
            boto3.client(
                "s3", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
            ).create_bucket(Bucket="span-bucket")
        with pytest.raises(httpx.ConnectError):
            httpx.get(EXTERNAL, timeout=2)
        return 0

    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        session = depstrace.instrument(trace_file=tmp_path / "t.jsonl")
        with TestClient(app) as client:
            client.get("/mixed")
        pipeline: Any = getattr(session.observers[0], "_pipeline", None)
        pipeline.provider.force_flush()  # an export while instrumented, through requests
        depstrace.uninstrument()
        spans = receiver.spans
    port = int(local_http.rpartition(":")[2])
    (request_span,) = [s for s in spans if s.name == "GET /mixed"]
    clients = [s for s in spans if s.kind == "CLIENT"]
    assert all(s.parent_id == request_span.span_id for s in clients)
    shown = {s.name: (s.attributes, s.status[0]) for s in clients}
    common = {"depstrace.call.count": 1}
    assert shown == {
        "GET 127.0.0.1": (
            common
            | {
                "depstrace.call.library": "httpx",
                "depstrace.call.target": f"http://127.0.0.1:{port}",
                "depstrace.call.allowed": True,
                "depstrace.call.operations": ["GET=1"],
                "server.address": "127.0.0.1",
                "server.port": port,
                "http.request.method": "GET",
                "url.scheme": "http",
            },
            "UNSET",
        ),
        "SET redis": (
            common
            | {
                "depstrace.call.library": "redis",
                "depstrace.call.target": "redis database 2 (fake: fakeredis)",
                "depstrace.call.allowed": True,
                "depstrace.call.operations": ["SET=1"],
                "depstrace.call.fake": "fakeredis",
                "db.system.name": "redis",
                "db.system": "redis",
                "db.namespace": "2",
                "db.operation.name": "SET",
            },
            "UNSET",
        ),
        "s3.CreateBucket": (
            common
            | {
                "depstrace.call.library": "botocore",
                "depstrace.call.target": (
                    "AWS s3 at s3.amazonaws.com:443 (bucket span-bucket) (fake: moto)"
                ),
                "depstrace.call.allowed": True,
                "depstrace.call.operations": ["CreateBucket=1"],
                "depstrace.call.fake": "moto",
                "server.address": "s3.amazonaws.com",
                "server.port": 443,
                "rpc.system": "aws-api",
                "rpc.service": "s3",
                "rpc.method": "CreateBucket",
                "aws.s3.bucket": "span-bucket",
            },
            "UNSET",
        ),
        "GET api.weather.invalid": (
            common
            | {
                "depstrace.call.library": "httpx",
                "depstrace.call.target": "http://api.weather.invalid:8081",
                "depstrace.call.allowed": False,
                "depstrace.call.operations": ["GET=1"],
                "server.address": "api.weather.invalid",
                "server.port": 8081,
                "http.request.method": "GET",
                "url.scheme": "http",
            },
            "ERROR",
        ),
    }
    records = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r for r in records if r["type"] == "outside_calls"] == []  # the export is no call
    assert [f["code"] for f in session.requests[0]["findings"]] == ["EXTERNAL_CALL"]


# -- fail open, trace files read back ------------------------------------------------------


def test_a_failing_probe_costs_a_warning_never_the_call(
    session: TraceSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An internal error while recording is counted and said once (for the account);
    the call itself goes through."""
    from depstrace import _failopen

    def broken(target: Target, operation: str) -> None:
        raise RuntimeError("probe bug")

    monkeypatch.setattr("depstrace.calls._http.note", broken)
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(201)))
    assert client.get("https://api.example.com/").status_code == 201
    assert client.get("https://api.example.com/").status_code == 201
    assert _failopen.internal_errors["httpx probe"] == 2
    said = [w for w in _failopen.warnings if "httpx probe" in w]
    assert said == [
        "depstrace internal error in httpx probe (tracing continues, this request's record "
        "may be incomplete): RuntimeError: probe bug"
    ]


def test_depstrace_report_judges_calls_from_the_file(
    session: TraceSession, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``depstrace report`` over the trace file finds the same EXTERNAL_CALL and exits 1."""
    from depstrace.cli import main

    monkeypatch.setenv("COLUMNS", "1000")
    with TestClient(_weather_app()) as client:
        client.get("/weather")
    depstrace.uninstrument()
    assert session.writer is not None
    assert main(["report", str(session.writer.path)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(
        "depstrace: 1 request, none reached a database depstrace can observe, but 1 error "
        "finding (EXTERNAL_CALL) below."
    )
    assert "GET /weather called http://api.weather.invalid:8081 (GET 1) through httpx" in out


@pytest.mark.usefixtures("real_redis")
def test_a_real_redis_is_no_test_database(session: TraceSession) -> None:
    """A real Redis, even on loopback, is allowed but not judged a test database: a run
    that reached only it is not called clean."""
    app = FastAPI()

    @app.get("/hit")
    def hit() -> int:
        client = redis.Redis(host="127.0.0.1", port=6379)
        return int(client.exists("depstrace:calls:none"))

    with TestClient(app) as client:
        client.get("/hit")
    from depstrace.report import summary_lines

    assert summary_lines(session.requests, trace_file=None)[0] == (
        "depstrace: 1 request, none reached a database depstrace can observe."
    )


def test_requests_fakes_follow_what_is_patched_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Instrumented while responses is active: its calls are fakes; once it stops, the
    same kind of call is real (and external)."""
    monkeypatch.delenv("DEPSTRACE_ALLOW_HOSTS", raising=False)
    previous = set_test_phase("t.py::t", "call")
    try:
        with responses.RequestsMock() as mocked:
            mocked.add(responses.GET, "https://api.example.com/n", json=1)
            session = depstrace.instrument(trace_file=tmp_path / "t.jsonl")
            assert requests.get("https://api.example.com/n", timeout=5).json() == 1
        with pytest.raises(requests.ConnectionError):
            requests.get("http://api.weather.invalid:8081/", timeout=2)
        refused = requests.ConnectionError("mocked")
        with (
            mock.patch.object(requests.adapters.HTTPAdapter, "send", side_effect=refused),
            pytest.raises(requests.ConnectionError, match="mocked"),
        ):
            requests.get("https://api.example.com/patched", timeout=5)
        records = _records(session)
    finally:
        restore_test_phase(previous)
        depstrace.uninstrument()
    (outside,) = [r for r in records if r["type"] == "outside_calls"]
    assert [(c["host"], c["fake"], c["allowed"]) for c in outside["calls"]] == [
        ("api.example.com", "responses", True),
        ("api.weather.invalid", None, False),
        ("api.example.com", "unittest", True),
    ]


def test_libraries_imported_later_are_patched_on_import() -> None:
    """In a fresh process instrument() imports none of the client libraries; importing one
    afterwards patches it (submodules such as redis.asyncio and botocore.client too), and
    uninstrument() restores it."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys
        import depstrace

        names = ("httpx", "requests", "redis", "botocore", "mongomock")

        def ours(function):
            return "depstrace" in function.__code__.co_filename

        depstrace.instrument(trace_file=None)
        print(sorted(m for m in names if m in sys.modules))
        import redis.asyncio, botocore.client, mongomock
        methods = [redis.asyncio.Redis.execute_command, redis.Redis.execute_command,
                   botocore.client.BaseClient._make_api_call,
                   mongomock.collection.Collection.find]
        print([ours(m) for m in methods])
        depstrace.uninstrument()
        methods = [redis.asyncio.Redis.execute_command, redis.Redis.execute_command,
                   botocore.client.BaseClient._make_api_call,
                   mongomock.collection.Collection.find]
        print([ours(m) for m in methods])
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
        "[True, True, True, True]",
        "[False, False, False, False]",
    ]
