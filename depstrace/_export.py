"""Where depstrace's spans go: the tracer provider, the exporter, the bounded flush.

A test run must never wait on telemetry.  Three rules follow from that:

* Nothing is exported unless somebody asked: ``DEPSTRACE_EXPORTER`` (``otlp``,
  ``console``, ``none``) defaults to ``otlp`` only when an
  ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variable names a collector.
* When the application already configured an OpenTelemetry SDK tracer provider
  with span processors, depstrace's spans go through it (they land next to the
  application's own spans) and depstrace never shuts it down.  Otherwise
  depstrace builds a *private* provider and never installs it globally:
  installing one would switch on FastAPI's built-in telemetry (>= 0.142) and
  change the application under test.
* A collector gets ``DEPSTRACE_EXPORT_TIMEOUT`` seconds, counted from
  ``instrument()``, to answer once.  :class:`Collector` builds the OTLP
  exporter in a background thread at ``instrument()`` and sends it an empty
  export (a valid OTLP request with no spans) while pytest imports and
  collects; a refused connection, no answer in time or an error status marks
  the collector down for the rest of the run, and later batches are counted
  and dropped without touching the network.  So a dead collector is known
  before the end of all but the shortest suites, and the end of the run waits
  for a collector only when it has answered.  What was not delivered becomes
  one line of the end-of-run account instead of the exporters' own log noise.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from depstrace import _config
from depstrace._config import ConfigurationError
from depstrace._redact import redact_text, redact_url

# Imported now, not when the first test makes the provider: it binds the
# standard-library callables it uses at import, before any test patches them.
from depstrace._spanjson import PrivateIdGenerator, console_line
from depstrace._version import VERSION
from depstrace.calls import own_calls

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

PROTOCOLS = ("http/protobuf", "grpc")
_PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
# protocol -> (module, distribution, how to get it).  OTLP/HTTP is a dependency of
# depstrace, so only a damaged environment lacks it; gRPC is the otlp extra.
_PACKAGES = {
    "http/protobuf": (
        "opentelemetry.exporter.otlp.proto.http",
        "opentelemetry-exporter-otlp-proto-http",
        "it is a dependency of depstrace, so this environment is incomplete: reinstall "
        "with: pip install --force-reinstall depstrace",
    ),
    "grpc": (
        "opentelemetry.exporter.otlp.proto.grpc",
        "opentelemetry-exporter-otlp-proto-grpc",
        "install it with: pip install 'depstrace[otlp]' (or use "
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, which needs nothing more)",
    ),
}
DEFAULT_SERVICE_NAME = "depstrace"
_SCHEDULE_DELAY_MS = 500  # export during the run, so a dead collector is known before the end
_MAX_QUEUE = 65536
# Loggers of the OTLP exporters and the batch processor: while depstrace's exporter
# runs, their records are dropped (the account says what failed, once).
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.http.transport._requests",
    "opentelemetry.exporter.http.transport._urllib3",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace.export",
)


@dataclass(frozen=True)
class ExportSettings:
    """Everything the environment says about exporting spans, checked at ``instrument()``."""

    exporter: str  # otlp, console, none
    explicit: bool  # DEPSTRACE_EXPORTER was set (else the default applied)
    timeout: float  # seconds
    protocol: str  # http/protobuf or grpc
    endpoint: str  # where OTLP spans go, as the exporter will use it
    missing: str | None = None  # why otlp cannot run (exporter package not installed)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ExportSettings:
        """Read and validate the settings; a bad value raises :class:`ConfigurationError`."""
        exporter, explicit = _config.span_exporter(environ)
        timeout = _config.export_timeout(environ)
        protocol = _protocol(environ) if exporter == "otlp" else "http/protobuf"
        endpoint = _endpoint(environ, protocol)
        missing = None
        if exporter == "otlp":
            module, distribution, remedy = _PACKAGES[protocol]
            if not _importable(module):
                missing = (
                    f"the OTLP exporter for {protocol} ({distribution}) is not installed; {remedy}"
                )
                if explicit:
                    raise ConfigurationError(f"DEPSTRACE_EXPORTER=otlp but {missing}")
        return cls(exporter, explicit, timeout, protocol, endpoint, missing)

    @property
    def shown_endpoint(self) -> str:
        """The endpoint with any password removed, for messages."""
        return redact_url(self.endpoint)


def _protocol(environ: Mapping[str, str]) -> str:
    for name in _PROTOCOL_VARS:
        raw = environ.get(name, "").strip()
        if raw:
            if raw.lower() not in PROTOCOLS:
                raise ConfigurationError(
                    f"{name}={raw!r} is not supported by depstrace: set it to "
                    f"{' or '.join(PROTOCOLS)} (Python has no http/json span exporter)."
                )
            return raw.lower()
    return PROTOCOLS[0]


def _endpoint(environ: Mapping[str, str], protocol: str) -> str:
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if protocol == "grpc":
        return traces or base or "http://localhost:4317"
    if traces:  # the signal endpoint is used as given (OTLP exporter specification)
        return traces
    return (base or "http://localhost:4318").rstrip("/") + "/v1/traces"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# -- pipelines ---------------------------------------------------------------------------


class Pipeline:
    """A tracer and how to finish it; this base class is the application's provider,
    which is flushed (bounded) and never shut down."""

    def __init__(self, tracer: Tracer, provider: TracerProvider) -> None:
        self.tracer = tracer
        self.provider = provider

    def close(self, timeout: float) -> list[str]:
        """Flush within ``timeout`` seconds; return lines for the end-of-run account."""
        flush = getattr(self.provider, "force_flush", None)
        done = flush is None or _bounded(lambda: flush(int(timeout * 1000)), timeout)
        if not done:
            return [
                f"depstrace: the application's tracer provider did not flush within "
                f"{timeout:g}s; depstrace's spans may not have been delivered"
            ]
        return []


class _PrivatePipeline(Pipeline):
    """depstrace's own provider: it counts what ended and what the collector took."""

    def __init__(
        self,
        tracer: Tracer,
        provider: TracerProvider,
        counter: _EndCounter,
        collector: Collector | None,
    ) -> None:
        super().__init__(tracer, provider)
        self.counter = counter
        self.collector = collector

    def close(self, timeout: float) -> list[str]:
        provider: Any = self.provider
        collector = self.collector
        if collector is None:  # console: spans were written as they ended
            _bounded(provider.shutdown, timeout)
            return []

        def flush() -> None:
            provider.force_flush(int(timeout * 1000))

        if collector.wait_for_answer() and not _bounded(flush, timeout):
            collector.give_up(collector.pending_reason(timeout))
        # Shutting down joins the batch worker: bounded, whatever it is doing.
        _bounded(provider.shutdown, 0.5)
        ended, delivered = self.counter.ended, collector.delivered
        missing = ended - delivered
        if missing <= 0:
            return []
        reason = collector.reason or "dropped: more spans than the export queue holds"
        count = f"{missing} span{'' if missing == 1 else 's'}"
        if delivered:
            count = f"{missing} of {ended} spans"
        verb = "was" if count == "1 span" else "were"
        return [f"depstrace: {count} {verb} not delivered to {collector.target} ({reason})"]


def open_pipeline(
    settings: ExportSettings, collector: Collector | None
) -> tuple[Pipeline | None, list[str]]:
    """The pipeline spans go through (None: no spans) and notes for the account.

    Called once, at the first test or request, so a provider configured in
    ``conftest.py`` or at import time of the application is found.
    ``collector`` is the one :class:`Collector` started at ``instrument()``
    for ``otlp``; it is shut down here when it is not used.
    """
    pipeline, notes = _choose(settings, collector)
    if collector is not None and not isinstance(pipeline, _PrivatePipeline):
        collector.close()
    return pipeline, notes


def _choose(
    settings: ExportSettings, collector: Collector | None
) -> tuple[Pipeline | None, list[str]]:
    if settings.exporter == "none" and settings.explicit:
        return None, []
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None, []  # the OpenTelemetry switch for "no telemetry at all"
    from opentelemetry import trace

    app_provider = trace.get_tracer_provider()
    if _has_processors(app_provider):
        return Pipeline(_tracer(app_provider), app_provider), []
    if settings.exporter == "none":
        return None, []
    if settings.missing is not None:
        variable = next(
            (v for v in _config.OTLP_ENDPOINT_VARS if os.environ.get(v, "").strip()),
            _config.OTLP_ENDPOINT_VARS[-1],
        )
        return None, [
            f"depstrace: {variable} is set but no spans were exported: {settings.missing}"
        ]
    return _private(settings, collector), []


def _tracer(provider: Any) -> Tracer:
    tracer: Tracer = provider.get_tracer("depstrace", VERSION)
    return tracer


def _has_processors(provider: object) -> bool:
    """Whether ``provider`` is an SDK provider that sends spans somewhere."""
    from opentelemetry.sdk.trace import TracerProvider

    if not isinstance(provider, TracerProvider):
        return False
    active = getattr(provider, "_active_span_processor", None)
    return bool(getattr(active, "_span_processors", ()))


def _private(settings: ExportSettings, collector: Collector | None) -> Pipeline:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    # shutdown_on_exit=False: the SDK's atexit shutdown joins a stuck exporter for
    # 30 s; depstrace shuts its provider down itself, bounded.
    provider = TracerProvider(
        resource=resource, shutdown_on_exit=False, id_generator=PrivateIdGenerator()
    )
    counter = _EndCounter()
    provider.add_span_processor(counter)
    if settings.exporter == "console" or collector is None:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        stream: Any = _Stderr()
        exporter = ConsoleSpanExporter(out=stream, formatter=console_line)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return _PrivatePipeline(_tracer(provider), provider, counter, None)
    provider.add_span_processor(
        BatchSpanProcessor(
            collector,
            max_queue_size=_MAX_QUEUE,
            schedule_delay_millis=_SCHEDULE_DELAY_MS,
            export_timeout_millis=settings.timeout * 1000,
        )
    )
    return _PrivatePipeline(_tracer(provider), provider, counter, collector)


def _otlp_exporter(settings: ExportSettings) -> tuple[SpanExporter, Any]:
    """The OTLP exporter and, for HTTP, the session that explains its failures."""
    exporter: SpanExporter
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        exporter = GrpcExporter(endpoint=settings.endpoint, timeout=settings.timeout)
        return exporter, None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    # A session from a credential provider (OTEL_PYTHON_EXPORTER_OTLP_HTTP_*CREDENTIAL_PROVIDER)
    # wins: then failures are explained from the exporter's log messages only.
    provided = any(
        name.startswith("OTEL_PYTHON_EXPORTER_OTLP_HTTP") and "CREDENTIAL_PROVIDER" in name
        for name in os.environ
    )
    session = None if provided else _recording_session()
    exporter = HttpExporter(endpoint=settings.endpoint, timeout=settings.timeout, session=session)
    return exporter, session


def _bounded(function: Callable[[], object], timeout: float) -> bool:
    """Run ``function`` in a daemon thread; False when it did not finish in time."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            function()
        except Exception as exc:  # reported by the caller's account, never raised
            failed.append(exc)

    thread = threading.Thread(target=run, name="depstrace-flush", daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive() and not failed


# -- span processors and exporters ------------------------------------------------------------


class _EndCounter(SpanProcessor):
    """Counts the spans that ended in the private provider (what should be delivered)."""

    def __init__(self) -> None:
        self.ended = 0
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.ended += 1


class Collector(SpanExporter):
    """The OTLP exporter behind a circuit breaker, started at ``instrument()``.

    A daemon thread builds the exporter (importing gRPC or requests off the
    main thread), tries a plain TCP connection (a refusal is known at once,
    without the exporter's retries) and sends an empty export.  The collector
    then counts as *answered*, or as *down* with a reason: refused, no answer
    within the timeout, an HTTP or gRPC error.  Down is for the rest of the
    run: retrying each batch would make every later flush wait again.
    """

    def __init__(self, settings: ExportSettings) -> None:
        self.timeout = settings.timeout
        self.endpoint = settings.endpoint
        self.target = settings.shown_endpoint  # for messages: no password
        self.delivered = 0
        self.reason: str | None = None
        self.started = time.monotonic()
        self._settings = settings
        self._inner: SpanExporter | None = None
        self._session: Any = None  # the HTTP exporter's session: it saw the last failure
        self._down = False
        self._closed = False
        self._answered = threading.Event()
        self._settled = threading.Event()  # answered or down
        self._ready = threading.Event()  # the exporter exists (or could not be built)
        self._lock = threading.Lock()  # one export at a time
        _quiet_exporter_logs()
        threading.Thread(target=self._start, name="depstrace-collector", daemon=True).start()

    @property
    def down(self) -> bool:
        """Whether the collector failed; nothing more is sent to it."""
        return self._down

    def give_up(self, reason: str) -> None:
        """Count the collector as down, keeping the first reason."""
        if not self._down:
            self.reason = self.reason or reason
            self._down = True
        self._settled.set()

    def wait_for_answer(self) -> bool:
        """Wait until the collector answered or failed, at most until the timeout
        counted from ``instrument()``; True when it answered."""
        remaining = self.started + self.timeout - time.monotonic()
        self._settled.wait(max(0.0, remaining))
        if not self._settled.is_set():
            self.give_up(self.pending_reason(self.timeout))
        return self._answered.is_set() and not self._down

    def pending_reason(self, timeout: float) -> str:
        """Why an export still running after ``timeout`` failed: the last answer the
        collector gave (an HTTP 503 the exporter keeps retrying), else no answer."""
        last = getattr(self._session, "last_failure", None)
        if last is not None and last != _TIMEOUT:
            return str(last)
        return f"no answer within {timeout:g}s"

    def _start(self) -> None:
        try:
            self._inner, self._session = _otlp_exporter(self._settings)
        except Exception as exc:
            self.give_up(redact_text(f"the exporter could not be created: {exc}")[:200])
            return
        finally:
            self._ready.set()
        reason = _probe(self.endpoint, min(1.0, self.timeout))
        if reason is not None:
            self.give_up(reason)
            return
        self._send([])

    def _send(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        inner = self._inner
        if inner is None or self._down:
            return SpanExportResult.FAILURE
        with self._lock:
            if self.down:  # it failed while this batch waited for the lock
                return SpanExportResult.FAILURE
            _quiet.active = True
            _quiet.messages = []
            started = time.monotonic()
            own = own_calls.set(True)  # depstrace's own request: no call of the app's
            try:
                result = inner.export(spans)
            except Exception as exc:
                result = SpanExportResult.FAILURE
                _quiet.messages.append(f"{type(exc).__name__}: {exc}")
            finally:
                own_calls.reset(own)
                _quiet.active = False
        if result == SpanExportResult.SUCCESS:
            self.delivered += len(spans)
            self._answered.set()
            self._settled.set()
            return result
        self.give_up(self._failure(_quiet.messages, time.monotonic() - started))
        return SpanExportResult.FAILURE

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Called by the batch processor's worker; fails at once when down."""
        if not self._ready.wait(self.timeout):
            return SpanExportResult.FAILURE
        return self._send(spans)

    def _failure(self, messages: list[str], elapsed: float) -> str:
        """A short reason for a failed export."""
        silent = f"no answer within {self.timeout:g}s"
        last = getattr(self._session, "last_failure", None)
        if last is not None:
            return silent if last == _TIMEOUT else str(last)
        for message in reversed(messages):
            grpc = _GRPC_FAILURE.search(message)
            if grpc:
                code = grpc.group(1)
                return silent if code == "DEADLINE_EXCEEDED" else f"gRPC {code}"
        if elapsed >= 0.9 * self.timeout:
            return silent
        if messages:
            text = redact_text(messages[-1])
            return text if len(text) <= 200 else text[:197] + "..."
        return "export failed"

    def shutdown(self) -> None:
        """Close the exporter (called by the batch processor when the provider shuts down)."""
        if self._closed:
            return
        self._closed = True
        inner = self._inner
        if inner is not None:
            _quiet.active = True
            try:
                inner.shutdown()
            finally:
                _quiet.active = False

    def close(self) -> None:
        """Stop using the collector (spans go elsewhere): shut the exporter down, bounded.

        An export already on the wire (the start-up probe) is waited for, briefly,
        so that nothing reaches the collector after ``uninstrument()`` returns."""
        self.give_up("not used")
        if self._lock.acquire(timeout=0.5):
            self._lock.release()
        _bounded(self.shutdown, 0.5)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here."""
        return True


def _probe(endpoint: str, timeout: float) -> str | None:
    """None when a TCP connection to ``endpoint`` opens, else why it did not."""
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None  # let the exporter report the malformed endpoint
    if host is None:
        return None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except OSError as exc:
        return redact_text(exc.strerror or str(exc)) or type(exc).__name__


_GRPC_FAILURE = re.compile(r"error code: StatusCode\.(\w+)")
_TIMEOUT = "timeout"


def _os_reason(exc: BaseException) -> str | None:
    """What the socket said, found in an exception's causes (requests nests them)."""
    seen: list[BaseException] = []
    pending: list[object] = [exc]
    while pending and len(seen) < 20:
        item = pending.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, ConnectionResetError):
            return "connection reset"
        if isinstance(item, socket.gaierror):
            return "host not found"
        if isinstance(item, TimeoutError):
            return _TIMEOUT
        pending.extend(
            [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
        )
    return None


def _recording_session() -> Any:
    """A ``requests.Session`` that remembers why its last request failed."""
    requests: Any = importlib.import_module("requests")  # a dependency of the HTTP exporter
    base: Any = requests.Session

    class RecordingSession(base):  # type: ignore[misc]
        last_failure: str | None = None

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            try:
                response = super().request(method, url, *args, **kwargs)
            except requests.exceptions.Timeout:
                self.last_failure = _TIMEOUT
                raise
            except ValueError:
                # The exporter's retry deadline ran out (it asks for a timeout of 0):
                # keep what the collector last answered, say a 503.
                self.last_failure = self.last_failure or _TIMEOUT
                raise
            except Exception as exc:
                reason = _os_reason(exc)
                self.last_failure = reason or redact_text(f"{type(exc).__name__}: {exc}")[:200]
                raise
            code = response.status_code
            if code >= 400:
                self.last_failure = f"HTTP {code} {response.reason or ''}".strip()
            else:
                self.last_failure = None
            return response

    return RecordingSession()


class _QuietState(threading.local):
    active = False
    messages: list[str]

    def __init__(self) -> None:
        self.messages = []


_quiet = _QuietState()


class _QuietFilter(logging.Filter):
    """Drop exporter log records emitted while depstrace's exporter runs (this thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _quiet.active:
            return True
        try:
            _quiet.messages.append(record.getMessage())
        except Exception:
            _quiet.messages.append(str(record.msg))
        return False


_filter = _QuietFilter()


def _quiet_exporter_logs() -> None:
    for name in _EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)


class _Stderr:
    """A stream that writes to whatever ``sys.stderr`` is now (pytest swaps it)."""

    def write(self, text: str) -> int:
        stream: IO[str] | None = sys.stderr
        return stream.write(text) if stream is not None else len(text)

    def flush(self) -> None:
        stream = sys.stderr
        if stream is not None:
            stream.flush()
