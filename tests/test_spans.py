"""Spans on the wire: a traced suite, run through pytest, read back by a real OTLP receiver.

Each test writes a small app and its own test suite with pytester, runs it in a
subprocess with ``DEPSTRACE=1`` and the standard ``OTEL_*`` variables pointing at
a receiver from ``tests/otlp_receiver.py`` (OTLP/HTTP or OTLP/gRPC, decoded with
``opentelemetry-proto``), and compares the trace tree and its attributes with
what the suite did and with the JSON Lines trace of the same run.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

import pytest
from otlp_receiver import GrpcReceiver, HttpReceiver, Span, outline, tree, walk

from depstrace import _attributes as attr

FASTAPI = tuple(int(p) for p in version("fastapi").split(".")[:2])

APP = """
import os
from typing import Annotated, Iterator

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy.orm import Session, sessionmaker

engine = sa.create_engine(f"sqlite:///{os.environ['SCENARIO_DATA']}/prod.db")
SessionLocal = sessionmaker(bind=engine)


def get_db() -> Iterator[Session]:
    with SessionLocal() as session:
        yield session


def settings() -> dict[str, int]:
    return {"page": 10}


def current_user(cfg: Annotated[dict[str, int], Depends(settings)]) -> str:
    return "ada"


def admin(user: Annotated[str, Depends(current_user)]) -> str:
    raise HTTPException(status_code=403, detail="not an admin")


app = FastAPI(title="shop")


@app.get("/items")
def items(
    db: Annotated[Session, Depends(get_db)],
    user: Annotated[str, Depends(current_user)],
    cfg: Annotated[dict[str, int], Depends(settings)],
) -> int:
    return len(db.execute(sa.text("SELECT 1")).all())


@app.get("/stats")
def stats() -> int:
    with SessionLocal() as session:  # bypasses Depends: always the module engine
        return len(session.execute(sa.text("SELECT 1")).all())


@app.get("/admin")
def admin_page(name: Annotated[str, Depends(admin)]) -> str:
    return name


@app.get("/headers")
def headers_seen(request: Request) -> list[str]:
    return sorted(request.headers)
"""

CONFTEST = """
import os

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app import app, get_db

test_engine = sa.create_engine(f"sqlite:///{os.environ['SCENARIO_DATA']}/test.db")


def override_get_db():
    with Session(test_engine) as session:
        yield session


@pytest.fixture
def client():
    app.dependency_overrides[get_db] = override_get_db
    with TestClient(app) as client:
        yield client
    app.dependency_overrides.clear()
"""

TESTS = """
def test_items(client):
    assert client.get("/items").json() == 1


def test_stats(client):
    assert client.get("/stats").json() == 1


def test_admin(client):
    assert client.get("/admin").status_code == 403
"""

# conftest.py additions that give the application its own tracer provider.
APP_PROVIDER = """
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": "shop-app"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
"""

INSTRUMENTOR = """
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

FastAPIInstrumentor.instrument_app(app)
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The shop app and its three tests, with a clean environment."""
    import os

    for name in list(os.environ):
        if name.startswith(("DEPSTRACE", "OTEL_", "FASTAPI_OTEL")):
            monkeypatch.delenv(name)
    data = pytester.path / "data"
    data.mkdir()
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("DEPSTRACE_FILE", str(pytester.path / "trace.jsonl"))
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    pytester.makepyfile(app=APP, conftest=CONFTEST, test_app=TESTS)
    return pytester


def run(suite: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the suite's own tests in a subprocess."""
    return suite.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def requests_of(suite: pytest.Pytester) -> dict[str, dict[str, Any]]:
    """The JSON Lines request records of the run, by test node id."""
    lines = (suite.path / "trace.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return {r["test"]: r for r in records if r["type"] == "request"}


def by_test(spans: list[Span]) -> dict[str, Span]:
    """The root span of each test's trace, by node id."""
    return {s.name: s for s in tree(spans) if attr.TEST_ID in s.attributes}


def test_span_tree_and_attributes_over_otlp_http(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One trace per test: test span > SERVER request span > dependency tree > database span."""
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-tests")
        result = run(suite)
    result.assert_outcomes(passed=3)
    assert "not delivered" not in result.stdout.str()
    spans = receiver.spans
    assert {s.service for s in spans} == {"shop-tests"}
    assert {s.scope for s in spans} == {"depstrace"}
    assert_shop_trace(suite, spans)


def test_span_tree_and_attributes_over_otlp_grpc(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same trace arrives over OTLP/gRPC (OTEL_EXPORTER_OTLP_PROTOCOL=grpc)."""
    with GrpcReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        result = run(suite)
    result.assert_outcomes(passed=3)
    assert "not delivered" not in result.stdout.str()
    spans = receiver.spans
    assert {s.service for s in spans} == {"depstrace"}  # the default service name
    assert_shop_trace(suite, spans)


def assert_shop_trace(suite: pytest.Pytester, spans: list[Span]) -> None:
    """The exact tree and attributes the shop suite produces without app telemetry."""
    data = suite.path / "data"
    records = requests_of(suite)
    tests = by_test(spans)
    assert sorted(tests) == [
        "test_app.py::test_admin",
        "test_app.py::test_items",
        "test_app.py::test_stats",
    ]
    assert len(tree(spans)) == 3  # nothing outside the three test traces

    items = tests["test_app.py::test_items"]
    assert outline(items) == (
        "test_app.py::test_items",
        "INTERNAL",
        [
            (
                "GET /items",
                "SERVER",
                [
                    ("conftest:override_get_db", "INTERNAL", [("test.db", "CLIENT", [])]),
                    ("app:current_user", "INTERNAL", [("app:settings", "INTERNAL", [])]),
                    ("app:settings", "INTERNAL", []),
                ],
            )
        ],
    )
    assert items.attributes == {
        attr.TEST_ID: "test_app.py::test_items",
        attr.CODE_FUNCTION_NAME: "test_items",
        attr.CODE_FILE_PATH: "test_app.py",
        attr.CODE_LINE_NUMBER: 1,
        attr.TEST_OUTCOME: "passed",
        attr.TEST_REQUESTS: 1,
        attr.TEST_WRONG_DB_REQUESTS: 0,
    }
    assert items.status == ("UNSET", "")
    request = items.children[0]
    record = records["test_app.py::test_items"]
    assert request.attributes == {
        attr.HTTP_REQUEST_METHOD: "GET",
        attr.URL_PATH: "/items",
        attr.HTTP_ROUTE: "/items",
        attr.HTTP_RESPONSE_STATUS_CODE: 200,
        attr.REQUEST_ID: record["id"],
        attr.TEST_ID: "test_app.py::test_items",
        attr.APP_ID: "app1",
        attr.APP_TITLE: "shop",
        attr.PROVIDER_ID: "app1",
        attr.WRONG_DB: False,
    }
    assert request.events == []
    assert request.status == ("UNSET", "")
    assert record["trace_id"] == request.trace_id == items.trace_id
    override, user, cached = request.children
    assert override.attributes == {
        attr.CODE_FUNCTION_NAME: "conftest.override_get_db",
        attr.CODE_FILE_PATH: "conftest.py",
        attr.CODE_LINE_NUMBER: 13,
        attr.DEPENDENCY_NAME: "db",
        attr.DEPENDENCY_ORIGINAL: "app:get_db",
        attr.DEPENDENCY_RESOLVED: "conftest:override_get_db",
        attr.DEPENDENCY_OVERRIDDEN: True,
        attr.DEPENDENCY_CACHED: False,
        attr.DEPENDENCY_KIND: "generator",
        attr.DEPENDENCY_PROVIDER: "app1",
        attr.DEPENDENCY_VALUE_TYPE: "sqlalchemy.orm.session:Session",
        attr.DEPENDENCY_ENGINE_ID: "e2",
        **scope_attribute(record, 0),
    }
    assert override.children[0].attributes == {
        attr.DB_SYSTEM_NAME: "sqlite",
        attr.DB_NAMESPACE: "test.db",
        attr.DB_ENGINE_ID: "e2",
        attr.DB_IS_TEST: True,
        attr.DB_VIA: "db",
        attr.DB_URL: f"sqlite:///{data}/test.db",
        attr.DB_STATEMENTS: 1,
        attr.DB_OPERATIONS: ["SELECT=1"],
        attr.DB_OPERATION_NAME: "SELECT",
    }
    assert override.children[0].status == ("UNSET", "")
    assert user.attributes[attr.DEPENDENCY_KIND] == "sync"
    assert user.attributes[attr.DEPENDENCY_OVERRIDDEN] is False
    assert user.children[0].attributes[attr.DEPENDENCY_NAME] == "cfg"
    assert user.children[0].attributes[attr.DEPENDENCY_CACHED] is False
    assert cached.attributes[attr.DEPENDENCY_NAME] == "cfg"
    assert cached.attributes[attr.DEPENDENCY_CACHED] is True
    for span in walk(request):  # children inside their parent's trace, after it started
        assert span.trace_id == items.trace_id
        assert all(c.start >= span.start for c in span.children)

    stats = tests["test_app.py::test_stats"]
    assert outline(stats) == (
        "test_app.py::test_stats",
        "INTERNAL",
        [("GET /stats", "SERVER", [("prod.db", "CLIENT", [])])],
    )
    assert stats.trace_id != items.trace_id
    record = records["test_app.py::test_stats"]
    request = stats.children[0]
    codes = [f["code"] for f in record["findings"]]
    assert codes[:2] == ["WRONG_DB", "DI_BYPASS"]
    assert request.attributes[attr.FINDINGS] == list(dict.fromkeys(codes))
    assert request.attributes[attr.WRONG_DB] is True
    assert request.status == ("ERROR", f"WRONG_DB: {record['findings'][0]['message']}")
    assert request.events == [
        (
            attr.FINDING_EVENT,
            {
                attr.FINDINGS: f["code"],
                attr.FINDING_CODE: f["code"],
                attr.FINDING_SEVERITY: f["severity"],
                attr.FINDING_MESSAGE: f["message"],
                attr.FINDING_HINT: f["hint"],
                **({attr.FINDING_ENGINE_ID: f["engine_id"]} if f["engine_id"] else {}),
            },
        )
        for f in record["findings"]
    ]
    database = request.children[0]
    assert database.attributes == {
        attr.DB_SYSTEM_NAME: "sqlite",
        attr.DB_NAMESPACE: "prod.db",
        attr.DB_ENGINE_ID: "e1",
        attr.DB_IS_TEST: False,
        attr.DB_URL: f"sqlite:///{data}/prod.db",
        attr.DB_STATEMENTS: 1,
        attr.DB_OPERATIONS: ["SELECT=1"],
        attr.DB_OPERATION_NAME: "SELECT",
    }
    assert database.status == ("ERROR", "not a test database")
    assert stats.attributes[attr.TEST_WRONG_DB_REQUESTS] == 1
    assert stats.attributes[attr.FINDINGS] == list(dict.fromkeys(codes))
    assert stats.status == ("ERROR", "1 request reached a non-test database")

    admin = tests["test_app.py::test_admin"]
    assert outline(admin) == (
        "test_app.py::test_admin",
        "INTERNAL",
        [
            (
                "GET /admin",
                "SERVER",
                [
                    (
                        "app:admin",
                        "INTERNAL",
                        [("app:current_user", "INTERNAL", [("app:settings", "INTERNAL", [])])],
                    )
                ],
            )
        ],
    )
    request = admin.children[0]
    assert request.attributes[attr.HTTP_RESPONSE_STATUS_CODE] == 403
    assert request.status == ("UNSET", "")  # a 4xx is the client's error
    failing = request.children[0]
    assert failing.status == ("ERROR", "fastapi.exceptions.HTTPException(403): not an admin")
    assert failing.attributes[attr.ERROR_TYPE] == "fastapi.exceptions.HTTPException"
    assert (
        failing.attributes[attr.DEPENDENCY_ERROR]
        == "fastapi.exceptions.HTTPException(403): not an admin"
    )


def scope_attribute(record: dict[str, Any], index: int) -> dict[str, Any]:
    """The dependency's FastAPI ``scope`` attribute, present only on FastAPI >= 0.121."""
    scope = record["dependencies"][index]["scope"]
    return {attr.DEPENDENCY_SCOPE: scope} if scope is not None else {}


def server_spans(span: Span) -> list[Span]:
    """Every SERVER span under (and including) ``span``."""
    return [s for s in walk(span) if s.kind == "SERVER"]


def depstrace_subtree(span: Span) -> Any:
    """The outline of ``span`` keeping only depstrace's own spans (others are skipped through)."""
    children: list[Any] = []
    for child in span.children:
        if child.scope == "depstrace":
            children.append(depstrace_subtree(child))
        else:
            children.extend(depstrace_subtree(child)[2])
    return (span.name, span.kind, children)


@pytest.mark.skipif(FASTAPI < (0, 142), reason="FastAPI's built-in telemetry exists from 0.142")
def test_fastapi_builtin_telemetry_server_span_is_the_parent(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With FastAPI's own telemetry on, its server span sits in the test's trace and
    depstrace adds one INTERNAL request span under it, never a second server span."""
    suite.makepyfile(conftest=APP_PROVIDER + CONFTEST)
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        result = run(suite)
    result.assert_outcomes(passed=3)
    spans = receiver.spans
    assert {s.service for s in spans} == {"shop-app"}  # the application's provider carried ours
    tests = by_test(spans)
    assert len(tree(spans)) == 3
    items = tests["test_app.py::test_items"]
    (server,) = items.children
    assert (server.name, server.kind, server.scope) == ("GET /items", "SERVER", "fastapi")
    assert server_spans(items) == [server]
    ours = [c for c in server.children if c.scope == "depstrace"]
    assert depstrace_subtree(server) == (
        "GET /items",
        "SERVER",
        [
            (
                "depstrace GET /items",
                "INTERNAL",
                [
                    ("conftest:override_get_db", "INTERNAL", [("test.db", "CLIENT", [])]),
                    ("app:current_user", "INTERNAL", [("app:settings", "INTERNAL", [])]),
                    ("app:settings", "INTERNAL", []),
                ],
            )
        ],
    )
    assert {c.name for c in server.children if c.scope == "fastapi"} >= {"fastapi.dependencies"}
    records = requests_of(suite)
    assert records["test_app.py::test_items"]["trace_id"] == items.trace_id
    assert ours[0].attributes[attr.REQUEST_ID] == records["test_app.py::test_items"]["id"]
    stats = tests["test_app.py::test_stats"]
    assert server_spans(stats) == [stats.children[0]]
    (request,) = [s for s in walk(stats) if s.name == "depstrace GET /stats"]
    assert request.status[0] == "ERROR"
    assert request.attributes[attr.FINDINGS][:2] == ["WRONG_DB", "DI_BYPASS"]


def test_instrumentation_fastapi_server_span_is_the_parent(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With opentelemetry-instrumentation-fastapi, its server span is reused the same way."""
    suite.makepyfile(conftest=APP_PROVIDER + CONFTEST + INSTRUMENTOR)
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        result = run(suite)
    result.assert_outcomes(passed=3)
    spans = receiver.spans
    tests = by_test(spans)
    assert len(tree(spans)) == 3
    items = tests["test_app.py::test_items"]
    (server,) = items.children
    assert (server.name, server.kind) == ("GET /items", "SERVER")
    assert server.scope == "opentelemetry.instrumentation.fastapi"
    assert server_spans(items) == [server]
    assert depstrace_subtree(server) == (
        "GET /items",
        "SERVER",
        [
            (
                "depstrace GET /items",
                "INTERNAL",
                [
                    ("conftest:override_get_db", "INTERNAL", [("test.db", "CLIENT", [])]),
                    ("app:current_user", "INTERNAL", [("app:settings", "INTERNAL", [])]),
                    ("app:settings", "INTERNAL", []),
                ],
            )
        ],
    )
    for name in ("test_app.py::test_stats", "test_app.py::test_admin"):
        assert len(server_spans(tests[name])) == 1


def test_traceparent_is_added_only_when_a_provider_could_use_it(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an application tracer provider the app sees its request headers unchanged;
    with one, it sees the traceparent that puts its server span in the test's trace."""
    suite.makepyfile(
        test_app="""
def test_headers(client):
    print("HEADERS", client.get("/headers").json())
"""
    )
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        plain = run(suite, "-s")
        suite.makepyfile(conftest=APP_PROVIDER + CONFTEST)
        with_provider = run(suite, "-s")
    plain.assert_outcomes(passed=1)
    with_provider.assert_outcomes(passed=1)
    plain_headers = "HEADERS ['accept', 'accept-encoding', 'connection', 'host', 'user-agent']"
    assert plain_headers in plain.stdout.str()
    assert (
        "HEADERS ['accept', 'accept-encoding', 'connection', 'host', 'traceparent', 'user-agent']"
        in with_provider.stdout.str()
    )


def test_exporter_none_sends_nothing(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEPSTRACE_EXPORTER=none wins over an OTLP endpoint: no span reaches the collector."""
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("DEPSTRACE_EXPORTER", "none")
        result = run(suite)
    result.assert_outcomes(passed=3)
    assert receiver.requests == []
    assert all(r["trace_id"] is None for r in requests_of(suite).values())


def test_console_exporter_prints_spans(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEPSTRACE_EXPORTER=console writes each span as JSON to stderr."""
    monkeypatch.setenv("DEPSTRACE_EXPORTER", "console")
    result = run(suite, "-s", "-k", "items")
    result.assert_outcomes(passed=1, deselected=2)
    text = result.stderr.str()
    for name in ('"name": "GET /items"', '"name": "conftest:override_get_db"', '"name": "test.db"'):
        assert name in text
    assert '"name": "test_app.py::test_items"' in text


@pytest.mark.postgres
def test_password_never_reaches_a_span(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, postgres: dict[str, str]
) -> None:
    """A password in a database URL, and in an exception message, appears in no exported byte."""
    secret = "s3cr3t-Pa55word"
    url = postgres["psycopg_prod"].replace("postgres@", f"postgres:{secret}@")
    suite.makepyfile(
        app=APP.replace("f\"sqlite:///{os.environ['SCENARIO_DATA']}/prod.db\"", repr(url)).replace(
            'raise HTTPException(status_code=403, detail="not an admin")',
            f"raise RuntimeError('cannot reach {url}')",
        ),
        test_app="""
import pytest

def test_stats(client):
    assert client.get("/stats").json() == 1

def test_admin(client):
    with pytest.raises(RuntimeError):
        client.get("/admin")
""",
    )
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        result = run(suite)
    result.assert_outcomes(passed=2)
    assert receiver.bodies
    assert not any(secret.encode() in body for body in receiver.bodies)
    spans = receiver.spans
    (database,) = [s for s in spans if s.kind == "CLIENT"]
    assert database.attributes[attr.DB_URL] == url.replace(secret, "***")
    assert database.attributes[attr.SERVER_ADDRESS] == "127.0.0.1"
    assert database.attributes[attr.DB_SYSTEM_NAME] == "postgresql"
    assert database.attributes[attr.DB_NAMESPACE] == "depstrace_prod"
    (failing,) = [s for s in spans if s.name == "app:admin"]
    assert failing.status[0] == "ERROR"
    assert "***" in failing.status[1]
