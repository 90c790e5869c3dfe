"""Exporter choice, settings and a collector that is down: the run passes, ends, says so once.

The collector-down tests run a traced suite in a subprocess against a port
that refuses connections and against a listener that accepts and never
answers, over OTLP/HTTP and OTLP/gRPC.  They assert only that the run
finishes, passes and prints one warning line; how long it takes is measured
in ``benchmarks/collector_down.py``, never asserted here.
"""

import os
import threading
from importlib.metadata import version
from pathlib import Path

import pytest
from otlp_receiver import GrpcReceiver, HttpReceiver, RefusingPort, SilentReceiver, tree

from depstrace import _config
from depstrace._config import ConfigurationError
from depstrace._export import ExportSettings, _bounded

APP = """
from typing import Annotated

from fastapi import Depends, FastAPI

app = FastAPI()


def settings() -> int:
    return 1


@app.get("/n")
def n(value: Annotated[int, Depends(settings)]) -> int:
    return value
"""

TESTS = """
import pytest
from fastapi.testclient import TestClient
from app import app


@pytest.mark.parametrize("i", range(5))
def test_n(i):
    with TestClient(app) as client:
        assert client.get("/n").json() == 1
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No DEPSTRACE_* or OTEL_* variable from the developer's shell."""
    for name in list(os.environ):
        if name.startswith(("DEPSTRACE", "OTEL_", "FASTAPI_OTEL")):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def suite(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> pytest.Pytester:
    """A five-test traced suite."""
    clean_env.setenv("DEPSTRACE", "1")
    clean_env.setenv("PYTHONPATH", str(pytester.path))
    pytester.makepyfile(app=APP, test_n=TESTS)
    return pytester


def run(suite: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the suite in a subprocess (the timeout only stops a hang; nothing is timed)."""
    return suite.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def warnings_of(result: pytest.RunResult) -> list[str]:
    """Lines of the run's output about undelivered spans or exporter trouble."""
    text = result.stdout.lines + result.stderr.lines
    words = (
        "not delivered",
        "no spans were exported",
        "did not flush",
        "Failed to export",
        "Transient error",
        "Exception while exporting",
        "Traceback",
    )
    return [line for line in text if any(w in line for w in words)]


# With an application provider, FastAPI >= 0.142 makes the server span and depstrace's
# request span is an INTERNAL child named apart; before, depstrace's is the server span.
FASTAPI = tuple(int(p) for p in version("fastapi").split(".")[:2])
REQUEST_SPAN = "depstrace GET /n" if FASTAPI >= (0, 142) else "GET /n"


# Five tests, each: a test span, a request span and the settings dependency's span.
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_collector_refusing_connections(
    suite: pytest.Pytester, clean_env: pytest.MonkeyPatch, protocol: str
) -> None:
    """A collector that refuses connections: the run passes and says so in one line."""
    with RefusingPort() as port:
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", port.endpoint)
        clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        result = run(suite)
    result.assert_outcomes(passed=5)
    target = port.endpoint + ("/v1/traces" if protocol == "http/protobuf" else "")
    assert warnings_of(result) == [
        f"depstrace: 15 spans were not delivered to {target} (connection refused)"
    ]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_collector_that_never_answers(
    suite: pytest.Pytester, clean_env: pytest.MonkeyPatch, protocol: str
) -> None:
    """A collector that accepts and never answers: the run passes, ends, warns once."""
    with SilentReceiver() as silent:
        clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", silent.endpoint)
        clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol)
        clean_env.setenv("DEPSTRACE_EXPORT_TIMEOUT", "1")
        result = run(suite)
    result.assert_outcomes(passed=5)
    assert warnings_of(result) == [
        f"depstrace: 15 spans were not delivered to {silent.endpoint} (no answer within 1s)"
    ]


def test_collector_answering_with_an_error(
    suite: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    """A server that is not a trace collector (404) is named by its status."""
    with HttpReceiver() as receiver:
        clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint + "/elsewhere")
        result = run(suite)
    result.assert_outcomes(passed=5)
    assert warnings_of(result) == [
        f"depstrace: 15 spans were not delivered to {receiver.endpoint}/elsewhere (HTTP 404 Not Found)"
    ]


def test_collector_overloaded(suite: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    """A collector answering 503 (retried by the exporter within the timeout) is named so."""
    with HttpReceiver(status=503) as receiver:
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        clean_env.setenv("DEPSTRACE_EXPORT_TIMEOUT", "1")
        result = run(suite)
    result.assert_outcomes(passed=5)
    assert receiver.refused >= 1
    assert warnings_of(result) == [
        f"depstrace: 15 spans were not delivered to {receiver.endpoint}/v1/traces "
        "(HTTP 503 Service Unavailable)"
    ]


def test_standard_variables_are_honoured(
    suite: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    """Service name, resource attributes and headers from OTEL_* reach the collector (gRPC)."""
    with GrpcReceiver() as receiver:
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        clean_env.setenv("OTEL_SERVICE_NAME", "checkout-tests")
        clean_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci")
        clean_env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=payments")
        result = run(suite)
    result.assert_outcomes(passed=5)
    assert warnings_of(result) == []
    assert {h["x-team"] for h in receiver.headers} == {"payments"}
    resources = {
        (a.key, a.value.string_value)
        for r in receiver.requests
        for rs in r.resource_spans
        for a in rs.resource.attributes
        if a.key in ("service.name", "deployment.environment.name")
    }
    assert resources == {("service.name", "checkout-tests"), ("deployment.environment.name", "ci")}
    assert len(tree(receiver.spans)) == 5
    assert len(receiver.spans) == 15


def test_app_provider_is_used_and_left_running(
    suite: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    """With the application's own SDK provider, depstrace's spans go through it, and
    depstrace never shuts it down (a span made after the run still arrives)."""
    suite.makepyfile(
        conftest="""
import atexit
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": "the-app"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)


@atexit.register
def after_the_run():
    trace.get_tracer("conftest").start_span("after the run").end()
"""
    )
    with HttpReceiver() as receiver:
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        clean_env.setenv("DEPSTRACE_EXPORTER", "otlp")
        result = run(suite, "-k", "test_n[0]")
    result.assert_outcomes(passed=1, deselected=4)
    spans = receiver.spans
    assert {s.service for s in spans} == {"the-app"}
    assert sorted(s.name for s in spans if s.scope == "depstrace") == sorted(
        ["app:settings", REQUEST_SPAN, "test_n.py::test_n[0]"]
    )
    assert [s.name for s in spans if s.scope == "conftest"] == ["after the run"]


def test_app_provider_is_used_without_any_exporter_setting(
    suite: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    """No OTLP endpoint for depstrace (default exporter none), but an application provider:
    the spans go with the application's."""
    with HttpReceiver() as receiver:
        suite.makepyfile(
            conftest=f"""
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter("{receiver.endpoint}/v1/traces")))
trace.set_tracer_provider(provider)
"""
        )
        result = run(suite, "-k", "test_n[0]")
    result.assert_outcomes(passed=1, deselected=4)
    assert sorted(s.name for s in receiver.spans if s.scope == "depstrace") == sorted(
        ["app:settings", REQUEST_SPAN, "test_n.py::test_n[0]"]
    )


BLOCKER = """
import sys

# As if the {distribution} were not installed.
sys.modules["{module}"] = None
"""

# protocol -> the exporter package, and what the message says to do without it: OTLP/HTTP
# is a dependency (only a damaged environment lacks it); gRPC is the otlp extra.
MISSING = {
    "http/protobuf": (
        "opentelemetry.exporter.otlp.proto.http",
        "the OTLP exporter for http/protobuf (opentelemetry-exporter-otlp-proto-http) is not "
        "installed; it is a dependency of depstrace, so this environment is incomplete: "
        "reinstall with: pip install --force-reinstall depstrace",
    ),
    "grpc": (
        "opentelemetry.exporter.otlp.proto.grpc",
        "the OTLP exporter for grpc (opentelemetry-exporter-otlp-proto-grpc) is not "
        "installed; install it with: pip install 'depstrace[otlp]' (or use "
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, which needs nothing more)",
    ),
}


def block_exporter(suite: pytest.Pytester, clean_env: pytest.MonkeyPatch, protocol: str) -> str:
    """Make the exporter of ``protocol`` unimportable in the suite; return the expected reason."""
    module, reason = MISSING[protocol]
    suite.makepyfile(blocker=BLOCKER.format(distribution=module, module=module))
    clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    return reason


@pytest.mark.parametrize("protocol", MISSING)
def test_missing_exporter_package_explicit_is_a_usage_error(
    suite: pytest.Pytester, clean_env: pytest.MonkeyPatch, protocol: str
) -> None:
    """DEPSTRACE_EXPORTER=otlp without the exporter package stops with what to do: the gRPC
    extra, or a reinstall for the HTTP exporter depstrace depends on."""
    reason = block_exporter(suite, clean_env, protocol)
    clean_env.setenv("DEPSTRACE_EXPORTER", "otlp")
    result = run(suite, "-p", "blocker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: depstrace: DEPSTRACE_EXPORTER=otlp but {reason}" in result.stderr.lines


@pytest.mark.parametrize("protocol", MISSING)
def test_missing_exporter_package_implicit_is_one_note(
    suite: pytest.Pytester, clean_env: pytest.MonkeyPatch, protocol: str
) -> None:
    """An OTLP endpoint in the environment but no exporter package: the run passes, one note."""
    reason = block_exporter(suite, clean_env, protocol)
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    result = run(suite, "-p", "blocker")
    result.assert_outcomes(passed=5)
    assert warnings_of(result) == [
        "depstrace: OTEL_EXPORTER_OTLP_ENDPOINT is set but no spans were exported: " + reason
    ]


def test_bad_exporter_value_is_a_usage_error(
    suite: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    """An unknown DEPSTRACE_EXPORTER stops pytest with exit 4, naming the variable."""
    clean_env.setenv("DEPSTRACE_EXPORTER", "jaeger")
    result = run(suite)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: depstrace: DEPSTRACE_EXPORTER='jaeger' is not a valid value. Set "
            "DEPSTRACE_EXPORTER to otlp, console or none (or unset it: then spans go to OTLP "
            "when OTEL_EXPORTER_OTLP_ENDPOINT is set, else nowhere)."
        ]
    )


# -- settings, in process ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ("none", False)),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ("otlp", False)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp", False)),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, ("none", False)),
        ({"DEPSTRACE_EXPORTER": "Console"}, ("console", True)),
        ({"DEPSTRACE_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, ("none", True)),
        ({"DEPSTRACE_EXPORTER": "otlp"}, ("otlp", True)),
    ],
)
def test_exporter_choice(environ: dict[str, str], expected: tuple[str, bool]) -> None:
    """The default is otlp only when an endpoint is set; an explicit value wins."""
    assert _config.span_exporter(environ) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 3.0), ("0.5", 0.5), ("10", 10.0), (" 2 ", 2.0)]
)
def test_export_timeout(raw: str | None, expected: float) -> None:
    """DEPSTRACE_EXPORT_TIMEOUT is seconds, default 3."""
    environ = {} if raw is None else {"DEPSTRACE_EXPORT_TIMEOUT": raw}
    assert _config.export_timeout(environ) == expected


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "nan", "inf"])
def test_bad_export_timeout(raw: str) -> None:
    """A timeout that is not a positive finite number is refused with the fix."""
    with pytest.raises(ConfigurationError) as caught:
        _config.export_timeout({"DEPSTRACE_EXPORT_TIMEOUT": raw})
    assert str(caught.value) == (
        f"DEPSTRACE_EXPORT_TIMEOUT={raw!r} is not a positive number of seconds; set it to, "
        "say, 3 (the default) or 0.5."
    )


@pytest.mark.parametrize(
    ("environ", "protocol", "endpoint"),
    [
        ({}, "http/protobuf", "http://localhost:4318/v1/traces"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"},
            "http/protobuf",
            "http://c:4318/v1/traces",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:9/custom",
            },
            "http/protobuf",
            "http://t:9/custom",
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc", "http://localhost:4317"),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
            "grpc",
            "http://c:4317",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            "http/protobuf",
            "http://localhost:4318/v1/traces",
        ),
    ],
)
def test_endpoint_and_protocol(environ: dict[str, str], protocol: str, endpoint: str) -> None:
    """Endpoint and protocol resolve as the OTLP exporter specification says."""
    settings = ExportSettings.from_env({"DEPSTRACE_EXPORTER": "otlp", **environ})
    assert (settings.protocol, settings.endpoint) == (protocol, endpoint)


def test_unsupported_protocol_names_the_variable() -> None:
    """http/json (no Python exporter) is refused, naming the variable that asked for it."""
    with pytest.raises(ConfigurationError) as caught:
        ExportSettings.from_env(
            {"DEPSTRACE_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}
        )
    assert str(caught.value) == (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json' is not supported by depstrace: set it "
        "to http/protobuf or grpc (Python has no http/json span exporter)."
    )


def test_endpoint_password_is_not_shown() -> None:
    """An endpoint with credentials is shown redacted in the account."""
    settings = ExportSettings.from_env(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://user:hunter2@c.example/v1/traces"}
    )
    assert settings.shown_endpoint == "https://user:***@c.example/v1/traces"


def test_bounded_gives_up_on_a_stuck_flush() -> None:
    """The bounded runner returns False for work that does not finish, True for work that does."""
    release = threading.Event()
    try:
        assert _bounded(release.wait, 0.05) is False
    finally:
        release.set()
    assert _bounded(lambda: None, 5) is True
    assert _bounded(lambda: 1 / 0, 5) is False


def test_instrument_rejects_bad_exporter_before_patching(clean_env: pytest.MonkeyPatch) -> None:
    """instrument() raises the configuration error and leaves nothing patched."""
    import depstrace

    clean_env.setenv("DEPSTRACE_EXPORTER", "zipkin")
    with pytest.raises(ConfigurationError, match="DEPSTRACE_EXPORTER='zipkin'"):
        depstrace.instrument(trace_file=None)
    assert not depstrace.is_instrumented()


def test_in_process_ids_reach_later_observers(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Outside pytest's plugin: record.trace_id and extras["span_id"] name the request span
    that arrives at the collector, and observers after the span observer see them."""
    from typing import Annotated

    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    import depstrace
    from depstrace._observers import Observer

    seen: list[tuple[str | None, str | None]] = []

    class Ids(Observer):
        def request_closed(self, record: object, data: object) -> None:
            seen.append((record.trace_id, record.extras.get("span_id")))  # type: ignore[attr-defined]

    def settings() -> int:
        return 1

    app = FastAPI()

    @app.get("/n")
    def n(value: Annotated[int, Depends(settings)]) -> int:
        return value

    with HttpReceiver() as receiver:
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        session = depstrace.instrument(trace_file=tmp_path / "trace.jsonl")
        session.observers.append(Ids())
        with TestClient(app) as client:
            client.get("/n")
        depstrace.uninstrument()
    (request,) = [s for s in receiver.spans if s.kind == "SERVER"]
    assert seen == [(request.trace_id, request.span_id)]
    assert session.requests[0]["trace_id"] == request.trace_id
    assert request.parent_id is None  # no test, no caller span: a trace of its own
    (dependency,) = tree(receiver.spans)[0].children
    assert dependency.name.endswith(":test_in_process_ids_reach_later_observers.<locals>.settings")
