"""structlog events (depstrace.request / .dependency / .finding) and the context processor."""

# No ``from __future__ import annotations``: FastAPI must see the real annotations of
# the routes defined inside these tests.

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import sqlalchemy as sa
import structlog
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider

import depstrace
from depstrace import _failopen, testing
from depstrace._config import ConfigurationError
from depstrace._context import current_request
from depstrace._observers import Observer
from depstrace.logs import (
    CONTEXT_FIELDS,
    DEPENDENCY_FIELDS,
    FINDING_FIELDS,
    REQUEST_FIELDS,
    LogSettings,
    add_depstrace_context,
)

LOG_VARS = ("DEPSTRACE_LOG_LEVEL", "DEPSTRACE_LOG_FORMAT")
_engines: list[sa.Engine] = []


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    """Close the SQLite connections the test's apps pooled (Python 3.13 warns otherwise)."""
    yield
    while _engines:
        _engines.pop().dispose()


@pytest.fixture(autouse=True)
def _structlog_untouched(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with structlog unconfigured and no depstrace log settings;
    whatever it configures is undone."""
    for name in LOG_VARS:
        monkeypatch.delenv(name, raising=False)
    saved, was_configured = structlog.get_config(), structlog.is_configured()
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    if was_configured:
        structlog.configure(**saved)


def make_app(urls: dict[str, str]) -> FastAPI:
    """/items takes its connection from a dependency on the test database; /report opens
    the "production" database itself."""
    test_engine = sa.create_engine(urls["test"])
    prod_engine = sa.create_engine(urls["prod"])
    _engines.extend((test_engine, prod_engine))
    app = FastAPI(title="logs-app")

    def settings() -> str:
        structlog.get_logger("app").info("in settings")  # a sync dependency: a worker thread
        return "s"

    def get_conn(s: Annotated[str, Depends(settings)]) -> Iterator[sa.Connection]:
        with test_engine.connect() as conn:
            yield conn

    @app.get("/items")
    def items(conn: Annotated[sa.Connection, Depends(get_conn)]) -> int:
        structlog.get_logger("app").info("in endpoint", test="mine")
        return int(conn.execute(sa.text("SELECT 1")).scalar_one())

    @app.get("/report")
    def report() -> int:
        with prod_engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT 2")).scalar_one())

    return app


def json_events(stderr: str) -> list[dict[str, Any]]:
    """The JSON lines depstrace wrote, without their timestamps and durations."""
    events = []
    for line in stderr.splitlines():
        event = json.loads(line)
        assert event.pop("timestamp").endswith("Z")
        if "duration_ms" in event:
            assert isinstance(event.pop("duration_ms"), float)
        events.append(event)
    return events


def serve(urls: dict[str, str], *paths: str) -> list[dict[str, Any]]:
    """Instrument (no file), request ``paths`` in order, return the request records."""
    app = make_app(urls)
    with testing.capture() as records, TestClient(app) as client:
        for path in paths:
            assert client.get(path).status_code == 200
    return records


def finding_event(record: dict[str, Any], finding: dict[str, Any]) -> dict[str, Any]:
    """The ``depstrace.finding`` event expected for ``finding`` of ``record``."""
    return {
        "event": "depstrace.finding",
        "level": finding["severity"],
        "logger": "depstrace",
        "request_id": record["id"],
        "test": None,
        "method": "GET",
        "path": record["path"],
        "route": record["route"],
        "code": finding["code"],
        "severity": finding["severity"],
        "detail": finding["message"],
        "hint": finding["hint"],
        "engine_id": finding["engine_id"],
        "trace_id": None,
        "span_id": None,
    }


def test_default_logs_only_findings_as_json(
    sqlite_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """At the default level a clean request is silent and each finding is one JSON line."""
    monkeypatch.setenv("DEPSTRACE_LOG_FORMAT", "json")
    records = serve(sqlite_urls, "/items", "/report")
    out, err = capsys.readouterr()
    report = records[1]
    assert [f["code"] for f in report["findings"]][:2] == ["WRONG_DB", "DI_BYPASS"]
    assert "depstrace" not in out  # stdout holds the app's own structlog lines only
    assert json_events(err) == [finding_event(report, finding) for finding in report["findings"]]
    assert not structlog.is_configured()  # depstrace never configures structlog globally


def test_info_adds_one_event_per_request(
    sqlite_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``DEPSTRACE_LOG_LEVEL=info`` logs every request with its databases and finding codes."""
    monkeypatch.setenv("DEPSTRACE_LOG_FORMAT", "json")
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "INFO")
    items, report = serve(sqlite_urls, "/items", "/report")
    events = json_events(capsys.readouterr().err)
    requests = [e for e in events if e["event"] == "depstrace.request"]
    test_url, prod_url = (sqlite_urls["test"], sqlite_urls["prod"])
    assert requests == [
        {
            "event": "depstrace.request",
            "level": "info",
            "logger": "depstrace",
            "request_id": items["id"],
            "test": None,
            "method": "GET",
            "path": "/items",
            "route": "/items",
            "status": 200,
            "app": "logs-app",
            "databases": [
                {
                    "engine_id": "e1",
                    "url": test_url,
                    "is_test": True,
                    "statements": 1,
                    "via": "conn",
                }
            ],
            "calls": [],
            "findings": [],
            "wrong_db": False,
            "trace_id": None,
            "span_id": None,
        },
        {
            "event": "depstrace.request",
            "level": "info",
            "logger": "depstrace",
            "request_id": report["id"],
            "test": None,
            "method": "GET",
            "path": "/report",
            "route": "/report",
            "status": 200,
            "app": "logs-app",
            "databases": [
                {"engine_id": "e2", "url": prod_url, "is_test": False, "statements": 1, "via": None}
            ],
            "calls": [],
            "findings": [f["code"] for f in report["findings"]],
            "wrong_db": True,
            "trace_id": None,
            "span_id": None,
        },
    ]
    assert [e["event"] for e in events] == ["depstrace.request"] * 2 + ["depstrace.finding"] * len(
        report["findings"]
    )


def test_debug_adds_one_event_per_dependency(
    sqlite_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``DEPSTRACE_LOG_LEVEL=debug`` logs each solved dependency with original and resolved."""
    monkeypatch.setenv("DEPSTRACE_LOG_FORMAT", "json")
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "debug")
    (items,) = serve(sqlite_urls, "/items")
    events = json_events(capsys.readouterr().err)
    dependencies = [e for e in events if e["event"] == "depstrace.dependency"]
    base = {
        "event": "depstrace.dependency",
        "level": "debug",
        "logger": "depstrace",
        "request_id": items["id"],
        "test": None,
        "overridden": False,
        "cached": False,
        "kind": "sync",
        "error": None,
        "trace_id": None,
        "span_id": None,
    }
    assert dependencies == [
        base
        | {
            "dependency": "conn",
            "original": "test_logs:make_app.<locals>.get_conn",
            "resolved": "test_logs:make_app.<locals>.get_conn",
            "kind": "generator",
            "parent": None,
            "engine_id": "e1",
        },
        base
        | {
            "dependency": "s",
            "original": "test_logs:make_app.<locals>.settings",
            "resolved": "test_logs:make_app.<locals>.settings",
            "parent": 0,
            "engine_id": None,
        },
    ]
    assert [e["event"] for e in events] == [
        "depstrace.request",
        "depstrace.dependency",
        "depstrace.dependency",
    ]


def test_off_is_silent_even_with_findings(
    sqlite_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``DEPSTRACE_LOG_LEVEL=off`` writes nothing, whatever happens."""
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "off")
    (report,) = serve(sqlite_urls, "/report")
    assert report["findings"]
    assert capsys.readouterr().err == ""


def test_console_format_is_one_readable_line_per_event(
    sqlite_urls: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without DEPSTRACE_LOG_FORMAT the default is structlog's console line (no colours
    when stderr is not a terminal)."""
    (report,) = serve(sqlite_urls, "/report")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(report["findings"])
    assert "\x1b[" not in lines[0]
    assert re.match(r"\S+Z \[error\s*\] depstrace\.finding\s+\[depstrace\] ", lines[0]), lines[0]
    assert "code=WRONG_DB" in lines[0]
    assert f"request_id={report['id']}" in lines[0]


def test_through_the_apps_structlog_configuration(
    sqlite_urls: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """When the app configured structlog, the events go through its processors, and even
    when it configures it only after depstrace started (the launcher's case)."""
    app = make_app(sqlite_urls)
    with testing.capture() as records, TestClient(app) as client:
        assert client.get("/report").status_code == 200  # not configured yet: stderr
        before = capsys.readouterr().err
        with structlog.testing.capture_logs() as logs:
            assert client.get("/report").status_code == 200
    assert before.count("depstrace.finding") == len(records[0]["findings"])
    assert capsys.readouterr().err == ""
    findings = [e for e in logs if e["event"] == "depstrace.finding"]
    second = records[1]
    assert findings == [
        {k: v for k, v in finding_event(second, f).items() if k not in ("event", "level", "logger")}
        | {"event": "depstrace.finding", "log_level": f["severity"]}
        for f in second["findings"]
    ]


def test_stdlib_integration_accepts_every_key(
    sqlite_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Apps that hand structlog events to ``logging`` as ``extra`` get every event: no key
    collides with a LogRecord attribute."""
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "debug")
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    caplog.set_level(logging.DEBUG, logger="depstrace")
    _failopen.internal_errors.clear()
    (report,) = serve(sqlite_urls, "/report")
    assert sum(_failopen.internal_errors.values()) == 0
    ours = [r for r in caplog.records if r.name == "depstrace"]
    assert [(r.getMessage(), r.levelname) for r in ours] == [("depstrace.request", "INFO")] + [
        ("depstrace.finding", f["severity"].upper()) for f in report["findings"]
    ]
    assert [getattr(r, "code", None) for r in ours[1:]] == [f["code"] for f in report["findings"]]


def test_trace_and_span_ids_come_from_the_request(
    sqlite_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Events carry the request's trace id and the span id the span observer noted."""
    monkeypatch.setenv("DEPSTRACE_LOG_FORMAT", "json")
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "info")

    class NotesSpan(Observer):  # what depstrace.spans does, minus the spans
        def request_opened(self, record: Any, scope: Any) -> None:
            record.trace_id = "0af7651916cd43dd8448eb211c80319c"
            record.extras["span_id"] = "b7ad6b7169203331"

    app = make_app(sqlite_urls)
    session = depstrace.instrument(trace_file=None)
    session.observers.insert(0, NotesSpan())
    with TestClient(app) as client:
        assert client.get("/report").status_code == 200
    depstrace.uninstrument()
    events = json_events(capsys.readouterr().err)
    assert {(e["trace_id"], e["span_id"]) for e in events} == {
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    }
    assert len(events) == 1 + len(session.requests[0]["findings"])


@pytest.mark.anyio
async def test_trace_id_of_an_active_opentelemetry_span(
    sqlite_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A request made inside an OpenTelemetry span logs that span's trace id."""
    monkeypatch.setenv("DEPSTRACE_LOG_FORMAT", "json")
    tracer = TracerProvider().get_tracer("test")
    app = make_app(sqlite_urls)
    depstrace.instrument(trace_file=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with tracer.start_as_current_span("test") as span:
            assert (await client.get("/report")).status_code == 200
    depstrace.uninstrument()
    trace_id = f"{span.get_span_context().trace_id:032x}"
    events = json_events(capsys.readouterr().err)
    assert events
    assert {e["trace_id"] for e in events} == {trace_id}


def test_findings_tied_to_no_request(
    sqlite_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A finding outside any request (a fixture on the production database) is logged with
    ``request_id`` null."""
    monkeypatch.setenv("DEPSTRACE_LOG_FORMAT", "json")
    session = depstrace.instrument(trace_file=None)
    engine = sa.create_engine(sqlite_urls["prod"])
    _engines.append(engine)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    session.flush()
    depstrace.uninstrument()
    events = json_events(capsys.readouterr().err)
    assert session.run_findings
    assert events == [
        {
            "event": "depstrace.finding",
            "level": finding["severity"],
            "logger": "depstrace",
            "request_id": None,
            "test": None,
            "method": None,
            "path": None,
            "route": None,
            "code": finding["code"],
            "severity": finding["severity"],
            "detail": finding["message"],
            "hint": finding["hint"],
            "engine_id": finding["engine_id"],
            "trace_id": None,
            "span_id": None,
        }
        for finding in session.run_findings
    ]


def test_processor_adds_the_running_requests_context(sqlite_urls: dict[str, str]) -> None:
    """The app's own events, in the endpoint and in a sync dependency's thread, carry the
    request's depstrace ids; keys the event already has are kept; outside a request nothing
    is added."""
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[add_depstrace_context, capture])
    (items,) = serve(sqlite_urls, "/items")
    structlog.get_logger("app").info("after")
    logs = capture.entries
    context = {
        "depstrace_request_id": items["id"],
        "route": "/items",
        "trace_id": None,
        "span_id": None,
    }
    assert [e for e in logs if not e["event"].startswith("depstrace.")] == [
        {"event": "in settings", "log_level": "info", "test": None} | context,
        {"event": "in endpoint", "log_level": "info", "test": "mine"} | context,
        {"event": "after", "log_level": "info"},
    ]
    assert set(context) | {"test"} == set(CONTEXT_FIELDS)


def test_processor_fails_open() -> None:
    """A broken request context is reported as an internal error; the event passes unchanged."""
    _failopen.internal_errors.clear()
    token = current_request.set(object())  # type: ignore[arg-type]
    try:
        event = add_depstrace_context(None, "info", {"event": "x"})
    finally:
        current_request.reset(token)
    assert event == {"event": "x"}
    assert _failopen.internal_errors == {"logs (add_depstrace_context)": 1}


def test_a_failing_app_processor_never_breaks_the_request(
    sqlite_urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception in the app's structlog chain is counted, and the response is intact."""
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "info")

    def boom(logger: Any, method: str, event: Any) -> Any:
        raise RuntimeError("processor broke")

    structlog.configure(processors=[boom])
    app = make_app(sqlite_urls)
    with TestClient(app) as client:
        depstrace.instrument(trace_file=None)
        _failopen.internal_errors.clear()
        response = client.get("/report")
        depstrace.uninstrument()
    assert (response.status_code, response.json()) == (200, 2)
    assert _failopen.internal_errors["logs (request closed)"] == 1


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"DEPSTRACE_LOG_LEVEL": "verbose"},
            "DEPSTRACE_LOG_LEVEL='verbose' is not a valid level. Set it to one of debug, info, "
            "warning, error, off (default warning: findings only; info adds one line per "
            "request, debug one per dependency).",
        ),
        (
            {"DEPSTRACE_LOG_FORMAT": "logfmt"},
            "DEPSTRACE_LOG_FORMAT='logfmt' is not a valid format. Set it to json (one JSON "
            "object per line) or console (the default), or unset it.",
        ),
    ],
)
def test_bad_settings_are_configuration_errors(environ: dict[str, str], message: str) -> None:
    """A bad level or format raises ConfigurationError naming the variable and the values."""
    with pytest.raises(ConfigurationError) as caught:
        LogSettings.from_env(environ)
    assert str(caught.value) == message


def test_settings_accept_every_documented_value() -> None:
    """Levels and formats are case-insensitive; empty means the default."""
    assert [
        LogSettings.from_env(e)
        for e in (
            {},
            {"DEPSTRACE_LOG_LEVEL": " Debug ", "DEPSTRACE_LOG_FORMAT": "JSON"},
            {"DEPSTRACE_LOG_LEVEL": "", "DEPSTRACE_LOG_FORMAT": ""},
            {"DEPSTRACE_LOG_LEVEL": "off", "DEPSTRACE_LOG_FORMAT": "console"},
        )
    ] == [
        LogSettings(level=logging.WARNING, format="console"),
        LogSettings(level=logging.DEBUG, format="json"),
        LogSettings(level=logging.WARNING, format="console"),
        LogSettings(level=logging.CRITICAL + 10, format="console"),
    ]


def test_a_bad_setting_stops_instrument_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """instrument() raises on a bad log setting, patches nothing and writes no file."""
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "loud")
    call = FastAPI.__call__
    with pytest.raises(ConfigurationError, match="DEPSTRACE_LOG_LEVEL='loud'"):
        depstrace.instrument(trace_file=tmp_path / "t.jsonl")
    assert (depstrace.is_instrumented(), FastAPI.__call__ is call) == (False, True)
    assert not (tmp_path / "t.jsonl").exists()


def test_a_bad_setting_is_a_pytest_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the plugin a bad DEPSTRACE_LOG_FORMAT stops pytest with exit 4 and the reason."""
    pytester.makepyfile("def test_nothing():\n    pass\n")
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("DEPSTRACE_LOG_FORMAT", "yaml")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*depstrace: DEPSTRACE_LOG_FORMAT='yaml' is not a valid format.*"])


def test_documented_fields_are_the_emitted_ones() -> None:
    """docs/logging.md lists exactly the fields each event carries."""
    doc = (Path(__file__).parent.parent / "docs" / "logging.md").read_text()
    for title, fields in (
        ("depstrace.request", REQUEST_FIELDS),
        ("depstrace.dependency", DEPENDENCY_FIELDS),
        ("depstrace.finding", FINDING_FIELDS),
        ("add_depstrace_context", CONTEXT_FIELDS),
    ):
        section = doc.split(f"### `{title}`", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
        rows = [
            line.split("|")[1].strip().strip("`")
            for line in section.splitlines()
            if line.startswith("| `")
        ]
        assert rows == list(fields), title


def test_emitted_events_have_exactly_the_declared_fields(
    sqlite_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What the events really carry is what the field lists (and so the docs) declare."""
    monkeypatch.setenv("DEPSTRACE_LOG_FORMAT", "json")
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "debug")
    serve(sqlite_urls, "/items", "/report")
    events = json_events(capsys.readouterr().err)
    declared = {
        "depstrace.request": REQUEST_FIELDS,
        "depstrace.dependency": DEPENDENCY_FIELDS,
        "depstrace.finding": FINDING_FIELDS,
    }
    for event in events:
        keys = set(event) - {"event", "level", "logger"}
        assert keys | {"duration_ms"} == set(declared[event["event"]]) | {"duration_ms"}
    assert {e["event"] for e in events} == set(declared)


def test_launched_subprocess_logs_to_its_stderr(tmp_path: Path, prod_dir: Path) -> None:
    """In a fresh interpreter with DEPSTRACE=1 the default logger writes JSON to stderr."""
    script = tmp_path / "s.py"
    script.write_text(
        "import depstrace, sqlalchemy as sa\n"
        "depstrace.instrument(trace_file=None)\n"
        f"e = sa.create_engine('sqlite:///{prod_dir / 'prod.db'}')\n"
        "with e.connect() as c: c.execute(sa.text('SELECT 1'))\n"
        "depstrace.uninstrument()\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        env={"DEPSTRACE_LOG_FORMAT": "json", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    events = json_events(result.stderr)
    assert [(e["event"], e["code"], e["request_id"]) for e in events] == [
        ("depstrace.finding", "DB_OUTSIDE_REQUEST", None)
    ]


def test_ids_are_those_of_the_exported_request_span(
    sqlite_urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With spans exported over OTLP, the events and the app's own lines (during the
    request) carry the trace and span id of the request span the collector received."""
    from otlp_receiver import HttpReceiver

    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "info")
    monkeypatch.setenv("DEPSTRACE_EXPORTER", "otlp")
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[add_depstrace_context, capture])
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        items, report = serve(sqlite_urls, "/items", "/report")
    spans = {
        s.attributes["depstrace.request.id"]: (s.trace_id, s.span_id)
        for s in receiver.spans
        if "depstrace.request.id" in s.attributes
    }
    assert set(spans) == {items["id"], report["id"]}
    seen = [
        (
            entry["event"],
            spans[entry.get("request_id") or entry.get("depstrace_request_id")]
            == (entry["trace_id"], entry["span_id"]),
        )
        for entry in capture.entries
    ]
    assert seen == [
        ("in settings", True),
        ("in endpoint", True),
        ("depstrace.request", True),
        ("depstrace.request", True),
    ] + [("depstrace.finding", True)] * len(report["findings"])


def test_quiet_settings_keep_stderr_off_unless_a_level_is_set() -> None:
    """``quiet`` (the pytest plugin's default) turns the private stderr logger off; any
    explicit DEPSTRACE_LOG_LEVEL, ``warning`` included, turns it back on."""
    assert [
        LogSettings.from_env(e, quiet=True)
        for e in ({}, {"DEPSTRACE_LOG_LEVEL": ""}, {"DEPSTRACE_LOG_LEVEL": "warning"})
    ] == [
        LogSettings(level=logging.WARNING, format="console", stderr=False),
        LogSettings(level=logging.WARNING, format="console", stderr=False),
        LogSettings(level=logging.WARNING, format="console", stderr=True),
    ]


GUARDED_APP = """
import os

import sqlalchemy as sa
from fastapi import FastAPI

prod = sa.create_engine(f"sqlite:///{os.environ['SCENARIO_DATA']}/prod.db")
app = FastAPI(title="guarded")


@app.get("/report")
def report() -> int:
    with prod.connect() as conn:
        return conn.execute(sa.text("SELECT 1")).scalar_one()
"""

GUARDED_CONFTEST = """
import pytest

import depstrace


@pytest.fixture(autouse=True)
def _only_test_databases():
    yield
    depstrace.assert_all_resolved_to_test_db()
"""

GUARDED_TESTS = """
from fastapi.testclient import TestClient

from app import app


def test_report():
    with TestClient(app) as client:
        assert client.get("/report").json() == 1
"""

# The app's own structlog configuration, routing every event to a JSON Lines file.
APP_STRUCTLOG_CONFTEST = """
import os

import structlog

structlog.configure(
    processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
    logger_factory=structlog.WriteLoggerFactory(
        open(os.path.join(os.environ["SCENARIO_DATA"], "app.log"), "a")
    ),
)
"""


@pytest.fixture
def guarded(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A traced suite whose autouse guard asserts test databases; its one request reaches
    prod.db."""
    data = pytester.path / "data"
    data.mkdir()
    for name in [*LOG_VARS, "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.setenv("COLUMNS", "1000")  # the account unwrapped, to find whole messages
    pytester.makepyfile(app=GUARDED_APP, conftest=GUARDED_CONFTEST, test_report=GUARDED_TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    return pytester


def wrong_db_message(pytester: pytest.Pytester) -> str:
    """The message of the run's one WRONG_DB finding, as the trace file has it."""
    (request,) = [
        r
        for r in depstrace.read_records(pytester.path / ".depstrace" / "trace.jsonl")
        if r["type"] == "request"
    ]
    (message,) = [f["message"] for f in request["findings"] if f["code"] == "WRONG_DB"]
    return str(message)


def test_under_pytest_a_finding_shows_once_in_the_failure_and_once_in_the_account(
    guarded: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default no structlog line reaches the output of a traced pytest run: the guard's
    failure and the account each say the finding once."""
    monkeypatch.setenv("COLUMNS", "1000")  # the account wraps long paths mid-word
    result = guarded.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    output = result.stdout.str() + result.stderr.str()
    message = wrong_db_message(guarded)
    # pytest's own one-line-per-outcome summary is pytest's, not depstrace's (and under
    # CI=true pytest does not shorten it): count only what comes before it.
    failure, account = output.split("short test summary info")[0].split("= depstrace =")
    assert (failure.count(message), account.count(message)) == (1, 1)
    assert "depstrace.finding" not in output
    assert "Captured stderr" not in output


def test_under_pytest_an_explicit_level_brings_the_lines_back(
    guarded: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DEPSTRACE_LOG_LEVEL=warning`` under pytest: the finding events are on stderr again,
    captured with the failing test."""
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "warning")
    monkeypatch.setenv("DEPSTRACE_LOG_FORMAT", "json")
    result = guarded.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    captured = result.stdout.str().split("Captured stderr call")[1].split("\n", 1)[1]
    events = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    assert [(e["event"], e["code"]) for e in events] == [
        ("depstrace.finding", "WRONG_DB"),
        ("depstrace.finding", "DI_BYPASS"),
    ]
    assert events[0]["detail"] == wrong_db_message(guarded)


def test_under_pytest_the_apps_structlog_configuration_still_gets_findings(
    guarded: pytest.Pytester,
) -> None:
    """An app that configured structlog receives the finding events by default under
    pytest too, wherever it routes them (a file here), and the terminal stays quiet."""
    guarded.makeconftest(GUARDED_CONFTEST + APP_STRUCTLOG_CONFTEST)
    result = guarded.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    events = [
        json.loads(line) for line in (guarded.path / "data" / "app.log").read_text().splitlines()
    ]
    assert [(e["event"], e["level"], e["code"]) for e in events] == [
        ("depstrace.finding", "error", "WRONG_DB"),
        ("depstrace.finding", "error", "DI_BYPASS"),
    ]
    assert "depstrace.finding" not in result.stdout.str() + result.stderr.str()
