"""OpenTelemetry spans for what depstrace saw: one trace per test, one span per ``Depends``.

Jaeger shows a test as one trace: a root span per pytest test, under it one
span per request, under that the dependency tree as FastAPI solved it, and a
client span per database engine the request used (docs/tracing.md has the
picture and every attribute).  The choices that shape this module:

* **No span on the hot path.**  The solver and the statement listener only
  fill the request record; dependency and database spans are created when the
  request closes, with explicit start and end times converted from the
  record's ``perf_counter`` readings.
* **Never a second server span.**  FastAPI's built-in telemetry (>= 0.142) and
  opentelemetry-instrumentation-fastapi create their server span inside
  ``FastAPI.__call__`` and take its parent only from the request headers.
  So when a tracer provider is configured, depstrace adds a ``traceparent``
  header for the running test's span (only when the request has none), which
  puts their server span in the test's trace; when FastAPI starts solving,
  the span active there tells whether such a server span exists.  If it does,
  the depstrace request span is an INTERNAL child of it; if not, depstrace's
  own request span is the SERVER span.
* **The running test is process state**, as in :mod:`depstrace._context`:
  ``TestClient`` serves requests on another thread whose context is not a copy
  of the test's, so the test span is found by the record's node id.
* Spans go where :mod:`depstrace._export` decides; nothing is created at all
  when no exporter was asked for and the application has no tracer provider.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode

from depstrace import _attributes as attr
from depstrace._export import Collector, ExportSettings, Pipeline, open_pipeline
from depstrace._failopen import report_internal_error
from depstrace._observers import Observer
from depstrace._records import DependencyNode, RequestRecord

__all__ = ["SpanObserver"]

# SQLAlchemy backend names -> OpenTelemetry ``db.system.name`` values.
_DB_SYSTEMS = {
    "mssql": "microsoft.sql_server",
    "oracle": "oracle.db",
    "postgres": "postgresql",
}
_NOT_CALLED = "not called"


class _AsgiHeaders(Getter[Iterable[Any]]):
    """Reads ASGI ``scope["headers"]`` (a list of byte pairs) for a propagator."""

    def get(self, carrier: Iterable[Any], key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        found = [bytes(v).decode("latin-1") for k, v in carrier if bytes(k).lower() == wanted]
        return found or None

    def keys(self, carrier: Iterable[Any]) -> list[str]:
        return [bytes(k).decode("latin-1") for k, _ in carrier]


_HEADERS = _AsgiHeaders()


@dataclass(eq=False)
class _TestSpan:
    span: Span
    requests: int = 0
    wrong_db: int = 0
    findings: list[str] = field(default_factory=list)


@dataclass(eq=False)
class _RequestState:
    parent: Context  # where the request's trace continues from (maybe empty: a new trace)
    parent_id: int | None  # span id of that parent
    outer_id: int | None  # span id active where the request was made (the client side)
    scope: MutableMapping[str, Any] | None
    span: Span | None = None
    kind: SpanKind = SpanKind.SERVER


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _hex_ids(span: Span) -> tuple[str, str] | None:
    """``(trace id, span id)`` in hex, or None for a span of a disabled SDK."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _site(site: str | None) -> dict[str, Any]:
    if not site:
        return {}
    path, _, line = site.rpartition(":")
    if not path or not line.isdigit():
        return {attr.CODE_FILE_PATH: site}
    return {attr.CODE_FILE_PATH: path, attr.CODE_LINE_NUMBER: int(line)}


def _function_name(qualname: str) -> str:
    """``module:qualname`` -> ``module.qualname`` (the semantic-conventions form)."""
    return qualname.replace(":", ".", 1)


def _error_type(error: str) -> str:
    kind = error.split(":", 1)[0]
    return kind.split("(", 1)[0]


def _provider_configured() -> bool:
    """Whether the application set a global tracer provider (server spans may exist)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


class SpanObserver(Observer):
    """Turns a trace session's events into OpenTelemetry spans (docs/tracing.md)."""

    name = "spans"

    def __init__(self, settings: ExportSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._resolved = False
        self._pipeline: Pipeline | None = None
        self._tracer: trace.Tracer | None = None
        self._notes: list[str] = []
        self._tests: dict[str, _TestSpan] = {}
        self._run_span: Span | None = None
        self._finished = False
        # Started now, so a dead collector is known while pytest imports and collects.
        self._collector: Collector | None = None
        if settings.exporter == "otlp" and settings.missing is None:
            self._collector = Collector(settings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SpanObserver:
        """An observer configured from ``DEPSTRACE_EXPORTER`` and the ``OTEL_*`` variables.

        Raises :class:`depstrace.ConfigurationError` for a value depstrace cannot use.
        """
        return cls(ExportSettings.from_env(environ))

    # -- the tracer, chosen at the first test or request --------------------------------

    def tracer(self) -> trace.Tracer | None:
        """The tracer spans are made with, or None when spans are off."""
        if not self._resolved:
            with self._lock:
                if not self._resolved:
                    try:
                        self._pipeline, notes = open_pipeline(self.settings, self._collector)
                        self._notes.extend(notes)
                        self._tracer = self._pipeline.tracer if self._pipeline else None
                    except Exception:
                        report_internal_error("spans (exporter setup)")
                    finally:
                        self._resolved = True
        return None if self._finished else self._tracer

    # -- tests -------------------------------------------------------------------------------

    def test_started(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        """Open the test's root span: every request of the test goes under it."""
        tracer = self.tracer()
        if tracer is None:
            return
        path, line, domain = location
        attributes: dict[str, Any] = {
            attr.TEST_ID: nodeid,
            attr.CODE_FUNCTION_NAME: domain,
            attr.CODE_FILE_PATH: path,
        }
        if line is not None:
            attributes[attr.CODE_LINE_NUMBER] = line + 1  # pytest counts from 0
        span = tracer.start_span(nodeid, context=Context(), attributes=attributes)
        with self._lock:
            previous = self._tests.pop(nodeid, None)
            self._tests[nodeid] = _TestSpan(span)
        if previous is not None:  # a rerun plugin ran the same node id again
            previous.span.end()

    def test_finished(self, nodeid: str, outcome: str) -> None:
        """Close the test's span with its outcome and what its requests did."""
        with self._lock:
            state = self._tests.pop(nodeid, None)
        if state is not None:
            self._end_test(state, outcome)

    def _end_test(self, state: _TestSpan, outcome: str) -> None:
        span = state.span
        span.set_attribute(attr.TEST_OUTCOME, outcome)
        span.set_attribute(attr.TEST_REQUESTS, state.requests)
        span.set_attribute(attr.TEST_WRONG_DB_REQUESTS, state.wrong_db)
        if state.findings:
            span.set_attribute(attr.FINDINGS, state.findings)
        if outcome in ("failed", "error"):
            span.set_status(Status(StatusCode.ERROR, f"test {outcome}"))
        elif state.wrong_db:
            many = state.wrong_db != 1
            span.set_status(
                Status(
                    StatusCode.ERROR,
                    f"{state.wrong_db} request{'s' if many else ''} reached a non-test database",
                )
            )
        span.end()

    # -- requests ---------------------------------------------------------------------------

    def request_opened(self, record: RequestRecord, scope: Any) -> None:
        """Find the request's parent; add a ``traceparent`` header for the test's span
        when the request has none and a server span could be made from it."""
        tracer = self.tracer()
        if tracer is None:
            return
        configured = _provider_configured()
        headers = scope.get("headers") or []
        parent = propagate.extract(headers, context=Context(), getter=_HEADERS)
        parent_context = trace.get_current_span(parent).get_span_context()
        outer = trace.get_current_span().get_span_context()
        if not parent_context.is_valid:
            source = outer if outer.is_valid else self._test_context(record.test)
            if source is not None:
                parent = trace.set_span_in_context(NonRecordingSpan(source), Context())
                parent_context = source
                if configured:
                    carrier: dict[str, str] = {}
                    propagate.inject(carrier, context=parent)
                    scope["headers"] = [
                        *headers,
                        *(
                            (k.lower().encode("latin-1"), v.encode("latin-1"))
                            for k, v in carrier.items()
                        ),
                    ]
        state = record.extras[self.name] = _RequestState(
            parent=parent,
            parent_id=parent_context.span_id if parent_context.is_valid else None,
            outer_id=outer.span_id if outer.is_valid else None,
            scope=scope,
        )
        if not configured:
            # No tracer provider is installed, so nothing in the app makes a server
            # span: depstrace's is the one, started now so that the trace id is known
            # before the record is written, even for a request with no parent.
            ids = _hex_ids(self._start_request_span(tracer, record, state, None))
            record.trace_id = ids[0] if ids else record.trace_id
        elif parent_context.is_valid:
            record.trace_id = f"{parent_context.trace_id:032x}"

    def _test_context(self, nodeid: str | None) -> SpanContext | None:
        state = self._tests.get(nodeid) if nodeid is not None else None
        return state.span.get_span_context() if state is not None else None

    def request_solving(self, record: RequestRecord) -> None:
        """Start the request span now that we can see whether the app made a server span."""
        state = record.extras.get(self.name)
        tracer = self.tracer()
        if not isinstance(state, _RequestState) or state.span is not None or tracer is None:
            return
        ids = _hex_ids(self._start_request_span(tracer, record, state, self._server_span(state)))
        record.trace_id = ids[0] if ids else record.trace_id

    def _server_span(self, state: _RequestState) -> Span | None:
        """The server span FastAPI's telemetry or an ASGI instrumentation started, if any."""
        telemetry = state.scope.get("fastapi.telemetry") if state.scope is not None else None
        span = getattr(telemetry, "span", None)
        if isinstance(span, Span) and span.is_recording():
            return span
        current = trace.get_current_span()
        if current.is_recording():
            span_id = current.get_span_context().span_id
            if span_id not in (state.parent_id, state.outer_id):
                return current
        return None

    def _start_request_span(
        self,
        tracer: trace.Tracer,
        record: RequestRecord,
        state: _RequestState,
        server: Span | None,
        *,
        unsolved: bool = False,
    ) -> Span:
        """Start ``state.span``: INTERNAL under ``server`` when there is one, else SERVER."""
        start = _ns(record.started_wall)
        if server is not None:
            server_start = getattr(server, "start_time", None)
            if isinstance(server_start, int) and server_start > start:
                start = server_start  # our record opens just outside the app
            context = trace.set_span_in_context(server, Context())
            kind = SpanKind.INTERNAL
        else:
            context = state.parent
            # A request that never reached the solver (a 404, a middleware that
            # answered) may still have a server span we could not see: only claim
            # SERVER when no tracer provider is configured to make one.
            kind = SpanKind.INTERNAL if unsolved and _provider_configured() else SpanKind.SERVER
        state.kind = kind
        state.span = tracer.start_span(
            f"{record.method} {record.path}", context=context, kind=kind, start_time=start
        )
        return state.span

    def request_closed(self, record: RequestRecord, data: dict[str, Any]) -> None:
        """Finish the request span; add its dependency and database spans and findings."""
        state = record.extras.pop(self.name, None)
        tracer = self.tracer()
        if not isinstance(state, _RequestState) or tracer is None:
            return
        state.scope = None
        span = state.span
        if span is None:
            span = self._start_request_span(tracer, record, state, None, unsolved=True)
        end = _ns(record.started_wall + (record.duration_ms or 0.0) / 1000.0)
        self._describe_request(span, state.kind, record, data)
        request_context = trace.set_span_in_context(span, Context())
        contexts = self._dependency_spans(tracer, record, request_context)
        self._database_spans(tracer, record, data, request_context, contexts=contexts, end=end)
        self._call_spans(tracer, record, data, request_context, end=end)
        codes = self._findings(span, data, end)
        span.end(end_time=end)
        ids = _hex_ids(span)
        if ids is not None:
            record.trace_id, record.extras["span_id"] = ids
        test = self._tests.get(record.test) if record.test is not None else None
        if test is not None:
            with self._lock:
                test.requests += 1
                test.wrong_db += any(not db["is_test"] for db in data["databases"])
                test.findings.extend(c for c in codes if c not in test.findings)

    def _describe_request(
        self, span: Span, kind: SpanKind, record: RequestRecord, data: dict[str, Any]
    ) -> None:
        route = data.get("route")
        name = f"{record.method} {route or record.path}"
        # Under another server span, a distinct name keeps Jaeger's view readable.
        span.update_name(name if kind == SpanKind.SERVER else f"depstrace {name}")
        attributes: dict[str, Any] = {
            attr.URL_PATH: record.path,
            attr.REQUEST_ID: record.id,
            attr.APP_ID: data["app"]["id"],
            attr.WRONG_DB: any(not db["is_test"] for db in data["databases"]),
        }
        if record.type == "http":
            attributes[attr.HTTP_REQUEST_METHOD] = record.method
        optional = {
            attr.HTTP_ROUTE: route,
            attr.HTTP_RESPONSE_STATUS_CODE: record.status,
            attr.TEST_ID: record.test,
            attr.APP_TITLE: data["app"]["title"],
            attr.PROVIDER_ID: (data.get("provider") or {}).get("id"),
            attr.ERROR_TYPE: _error_type(record.error) if record.error else None,
        }
        attributes.update((k, v) for k, v in optional.items() if v is not None)
        span.set_attributes(attributes)
        if record.error:
            span.set_status(Status(StatusCode.ERROR, record.error))
        elif record.status is not None and record.status >= 500 and kind == SpanKind.SERVER:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {record.status}"))

    def _dependency_spans(
        self, tracer: trace.Tracer, record: RequestRecord, request_context: Context
    ) -> dict[int, Context]:
        contexts: dict[int, Context] = {}
        for node in record.dependencies:  # a parent is always listed before its children
            parent = request_context if node.parent is None else contexts.get(node.parent)
            start = _ns(record.started_wall + (node.started - record.started))
            span = tracer.start_span(
                node.resolved,
                context=parent or request_context,
                attributes=_dependency_attributes(node),
                start_time=start,
            )
            if node.error and not node.error.startswith(_NOT_CALLED):
                span.set_attribute(attr.ERROR_TYPE, _error_type(node.error))
                span.set_status(Status(StatusCode.ERROR, node.error))
            span.end(end_time=start + _ns((node.duration_ms or 0.0) / 1000.0))
            contexts[node.id] = trace.set_span_in_context(span, Context())
        return contexts

    def _database_spans(
        self,
        tracer: trace.Tracer,
        record: RequestRecord,
        data: dict[str, Any],
        request_context: Context,
        *,
        contexts: dict[int, Context],
        end: int,
    ) -> None:
        for db in data["databases"]:
            via = record.provider_of(db["engine_id"])
            context = contexts.get(via.id, request_context) if via is not None else request_context
            start = _ns(record.started_wall + (via.started - record.started)) if via else None
            system = _DB_SYSTEMS.get(db["backend"], db["backend"])
            operations = db.get("operations") or {}
            attributes: dict[str, Any] = {
                attr.DB_SYSTEM_NAME: system,
                attr.DB_ENGINE_ID: db["engine_id"],
                attr.DB_IS_TEST: db["is_test"],
                attr.DB_URL: db["url"],
                attr.DB_STATEMENTS: db["statements"],
                attr.DB_OPERATIONS: [f"{k}={v}" for k, v in operations.items()],
            }
            optional = {
                attr.DB_NAMESPACE: db.get("database"),
                attr.SERVER_ADDRESS: db.get("host"),
                attr.SERVER_PORT: db.get("port"),
                attr.DB_VIA: db.get("via"),
                attr.DB_OPERATION_NAME: next(iter(operations)) if len(operations) == 1 else None,
            }
            attributes.update((k, v) for k, v in optional.items() if v is not None)
            span = tracer.start_span(
                db.get("database") or system,
                context=context,
                kind=SpanKind.CLIENT,
                attributes=attributes,
                start_time=start if start is not None else _ns(record.started_wall),
            )
            if not db["is_test"]:
                span.set_status(Status(StatusCode.ERROR, "not a test database"))
            span.end(end_time=end)

    def _call_spans(
        self,
        tracer: trace.Tracer,
        record: RequestRecord,
        data: dict[str, Any],
        request_context: Context,
        *,
        end: int,
    ) -> None:
        """One CLIENT span per target the request called, from its first call to the
        return of its last (calls are counted, not kept one by one)."""
        uses = list(record.outbound.values())
        for use, call in zip(uses, data.get("calls") or (), strict=False):
            start = (
                end
                if use.started is None
                else _ns(record.started_wall + (use.started - record.started))
            )
            stop = (
                end
                if use.ended is None
                else _ns(record.started_wall + (use.ended - record.started))
            )
            name, attributes = call_attributes(call)
            span = tracer.start_span(
                name,
                context=request_context,
                kind=SpanKind.CLIENT,
                attributes=attributes,
                start_time=start,
            )
            if not call["allowed"]:
                span.set_status(Status(StatusCode.ERROR, "EXTERNAL_CALL: not an allowed host"))
            span.end(end_time=max(stop, start))

    def _findings(self, span: Span, data: dict[str, Any], end: int) -> list[str]:
        codes: list[str] = []
        wrong_db: str | None = None
        for finding in data["findings"]:
            span.add_event(attr.FINDING_EVENT, _finding_attributes(finding), timestamp=end)
            code = finding["code"]
            if code not in codes:
                codes.append(code)
            if code == "WRONG_DB" and wrong_db is None:
                wrong_db = finding["message"]
        if codes:
            span.set_attribute(attr.FINDINGS, codes)
        if wrong_db is not None:
            span.set_status(Status(StatusCode.ERROR, f"WRONG_DB: {wrong_db}"))
        return codes

    # -- findings tied to no request -----------------------------------------------------

    def run_finding(self, data: dict[str, Any]) -> None:
        """An event on the running test's span, or on a ``depstrace.run`` span outside tests."""
        tracer = self.tracer()
        if tracer is None:
            return
        test = data.get("test")
        state = self._tests.get(test) if isinstance(test, str) else None
        if state is not None:
            state.span.add_event(attr.FINDING_EVENT, _finding_attributes(data))
            with self._lock:
                if data["code"] not in state.findings:
                    state.findings.append(data["code"])
            return
        with self._lock:
            if self._run_span is None:
                self._run_span = tracer.start_span(attr.RUN_SPAN, context=Context())
            run = self._run_span
        run.add_event(attr.FINDING_EVENT, _finding_attributes(data))

    # -- end ---------------------------------------------------------------------------------

    def finish(self) -> list[str]:
        """End what is still open, flush within the export timeout, report what failed."""
        with self._lock:
            if self._finished:
                return []
            self._finished = True
            open_tests, self._tests = list(self._tests.values()), {}
            run, self._run_span = self._run_span, None
        for state in open_tests:
            self._end_test(state, "unfinished")
        if run is not None:
            run.end()
        lines = list(self._notes)
        if self._pipeline is not None:
            lines.extend(self._pipeline.close(self.settings.timeout))
        elif self._collector is not None and not self._resolved:
            self._collector.close()  # no test and no request ever needed it
        return lines


def call_attributes(call: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The span name and attributes (semantic conventions first) of a ``calls[]`` entry."""
    operations: dict[str, int] = call.get("operations") or {}
    single = next(iter(operations)) if len(operations) == 1 else None
    system = call["system"]
    attributes: dict[str, Any] = {
        attr.CALL_LIBRARY: call["library"],
        attr.CALL_TARGET: call["target"],
        attr.CALL_ALLOWED: call["allowed"],
        attr.CALL_COUNT: call["count"],
        attr.CALL_OPERATIONS: [f"{k}={v}" for k, v in operations.items()],
    }
    optional: dict[str, Any] = {
        attr.SERVER_ADDRESS: call.get("host"),
        attr.SERVER_PORT: call.get("port"),
        attr.CALL_FAKE: call.get("fake"),
    }
    if system == "http":
        optional[attr.HTTP_REQUEST_METHOD] = single
        optional[attr.URL_SCHEME] = call.get("scheme")
        name = f"{single or 'HTTP'} {call.get('host') or ''}".rstrip()
    elif system == "aws":
        optional[attr.RPC_SYSTEM] = "aws-api"
        optional[attr.RPC_SERVICE] = call.get("service")
        optional[attr.RPC_METHOD] = single
        optional[attr.AWS_S3_BUCKET] = call.get("bucket")
        name = f"{call.get('service')}.{single}" if single else f"{call.get('service')}"
    else:  # redis, mongodb
        optional[attr.DB_SYSTEM_NAME] = system
        optional[attr.DB_SYSTEM] = system
        database = call.get("database")
        optional[attr.DB_NAMESPACE] = None if database is None else str(database)
        optional[attr.DB_OPERATION_NAME] = single
        name = f"{single} {system}" if single else system
    attributes.update((k, v) for k, v in optional.items() if v is not None)
    return name, attributes


def _dependency_attributes(node: DependencyNode) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        attr.CODE_FUNCTION_NAME: _function_name(node.resolved),
        attr.DEPENDENCY_NAME: node.label,
        attr.DEPENDENCY_ORIGINAL: node.original,
        attr.DEPENDENCY_RESOLVED: node.resolved,
        attr.DEPENDENCY_OVERRIDDEN: node.overridden,
        attr.DEPENDENCY_CACHED: node.cached,
        attr.DEPENDENCY_KIND: node.kind,
        **_site(node.resolved_site),
    }
    optional = {
        attr.DEPENDENCY_PROVIDER: node.provider,
        attr.DEPENDENCY_SCOPE: node.scope,
        attr.DEPENDENCY_VALUE_TYPE: node.value_type,
        attr.DEPENDENCY_ENGINE_ID: node.engine_id,
        attr.DEPENDENCY_ERROR: node.error,
    }
    attributes.update((k, v) for k, v in optional.items() if v is not None)
    return attributes


def _finding_attributes(finding: Mapping[str, Any]) -> dict[str, Any]:
    attributes = {
        # The code also under the span attribute's name: Jaeger matches a tag search
        # against event fields too, so ``depstrace.findings=WRONG_DB`` finds the request
        # although the span attribute itself is a list.
        attr.FINDINGS: finding.get("code"),
        attr.FINDING_CODE: finding.get("code"),
        attr.FINDING_SEVERITY: finding.get("severity"),
        attr.FINDING_MESSAGE: finding.get("message"),
        attr.FINDING_HINT: finding.get("hint"),
        attr.FINDING_ENGINE_ID: finding.get("engine_id"),
    }
    return {k: v for k, v in attributes.items() if v is not None}
