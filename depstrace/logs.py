"""structlog events for what depstrace saw, and a processor for the app's own logs.

Three events, emitted when a request closes (never per ``Depends`` or per
statement, so the hot path is untouched): ``depstrace.request`` (info),
``depstrace.dependency`` (debug, one per solved dependency) and
``depstrace.finding`` (warning or error, by the finding's severity; also for
findings tied to no request).  Each carries the request's ``trace_id`` and
``span_id`` so a log line leads to its trace in Jaeger.

Where they go: when the application configured structlog
(``structlog.is_configured()``, checked per event because a launched app
configures it after depstrace started) they go through
``structlog.get_logger("depstrace")`` and the app's own processors; otherwise
through a private logger that never touches the global configuration: console
lines on stderr (colours in a terminal), or JSON lines with
``DEPSTRACE_LOG_FORMAT=json``.  ``DEPSTRACE_LOG_LEVEL`` (default ``warning``)
decides which events depstrace produces at all.  Under pytest the end-of-run
account is the output: unless ``DEPSTRACE_LOG_LEVEL`` is set, the private
logger stays silent there (a finding would otherwise show up a third time, in
the failing test's captured stderr), while an app's own structlog
configuration still receives the findings.  Keys are chosen so that
``structlog.stdlib`` users can pass them as ``extra`` (no ``name``, ``message``,
``module``...: :class:`logging.LogRecord` refuses those).

:func:`add_depstrace_context` is the other direction: a processor users add to
their own chain to stamp their log lines with the running request's ids.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import structlog

from depstrace._attributes import FINDING_EVENT
from depstrace._config import ConfigurationError
from depstrace._context import current_request
from depstrace._failopen import report_internal_error
from depstrace._observers import Observer

if TYPE_CHECKING:
    from depstrace._records import RequestRecord

__all__ = [
    "DEPENDENCY_EVENT",
    "FINDING_EVENT",
    "REQUEST_EVENT",
    "LogObserver",
    "LogSettings",
    "add_depstrace_context",
]

_now = datetime.now
_UTC = timezone.utc

REQUEST_EVENT = "depstrace.request"
DEPENDENCY_EVENT = "depstrace.dependency"

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
FORMATS = ("console", "json")
DEFAULT_LEVEL = "warning"

# Fields of each event, in the order they are documented (docs/logging.md).
REQUEST_FIELDS = (
    "request_id",
    "test",
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "app",
    "databases",
    "calls",
    "findings",
    "wrong_db",
    "trace_id",
    "span_id",
)
DEPENDENCY_FIELDS = (
    "request_id",
    "test",
    "dependency",
    "original",
    "resolved",
    "overridden",
    "cached",
    "kind",
    "parent",
    "duration_ms",
    "error",
    "engine_id",
    "trace_id",
    "span_id",
)
FINDING_FIELDS = (
    "request_id",
    "test",
    "method",
    "path",
    "route",
    "code",
    "severity",
    "detail",
    "hint",
    "engine_id",
    "trace_id",
    "span_id",
)
CONTEXT_FIELDS = ("depstrace_request_id", "test", "route", "trace_id", "span_id")


@dataclass(frozen=True)
class LogSettings:
    """``DEPSTRACE_LOG_LEVEL`` and ``DEPSTRACE_LOG_FORMAT``, validated."""

    level: int
    format: str  # "console" or "json"; used only when the app has no structlog config
    # Whether the private logger (no app structlog config) writes to stderr at all.
    stderr: bool = True

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, quiet: bool = False
    ) -> LogSettings:
        """Read and check both variables; a bad value raises :class:`ConfigurationError`.

        ``quiet`` (the pytest plugin's default) keeps the private stderr logger
        silent unless ``DEPSTRACE_LOG_LEVEL`` is set: the account says it all.
        """
        raw_level = environ.get("DEPSTRACE_LOG_LEVEL", "").strip()
        level = raw_level.lower() or DEFAULT_LEVEL
        if level not in LEVELS:
            raise ConfigurationError(
                f"DEPSTRACE_LOG_LEVEL={raw_level!r} is not a valid level. Set it to one of "
                f"{', '.join(LEVELS)} (default {DEFAULT_LEVEL}: findings only; info adds one "
                "line per request, debug one per dependency)."
            )
        raw_format = environ.get("DEPSTRACE_LOG_FORMAT", "").strip()
        fmt = raw_format.lower() or "console"
        if fmt not in FORMATS:
            raise ConfigurationError(
                f"DEPSTRACE_LOG_FORMAT={raw_format!r} is not a valid format. Set it to "
                "json (one JSON object per line) or console (the default), or unset it."
            )
        return cls(level=LEVELS[level], format=fmt, stderr=bool(raw_level) or not quiet)


class _StderrLogger:
    """Writes each rendered line to whatever ``sys.stderr`` is *now*.

    Looked up per line so pytest's capture (which swaps ``sys.stderr``) sees it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        stream = sys.stderr
        if stream is None:  # pythonw, or a closed interpreter
            return
        with self._lock:
            stream.write(message + "\n")
            stream.flush()

    debug = info = warning = error = critical = msg


def _add_logger_name(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.setdefault("logger", "depstrace")  # ConsoleRenderer shows it as [depstrace]
    return event_dict


def _timestamp(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # What structlog's TimeStamper(fmt="iso", utc=True) adds, from a datetime.now
    # bound at import: TimeStamper looks datetime.datetime up per event, where
    # freezers and tests put their own.
    event_dict["timestamp"] = _now(_UTC).isoformat().replace("+00:00", "Z")
    return event_dict


def _private_logger(settings: LogSettings) -> Any:
    renderer: Any
    if settings.format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        stream = sys.stderr
        colors = bool(stream is not None and stream.isatty() and "NO_COLOR" not in os.environ)
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    return structlog.wrap_logger(
        _StderrLogger(),
        processors=[
            _add_logger_name,
            structlog.processors.add_log_level,
            _timestamp,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        context_class=dict,
        cache_logger_on_first_use=True,
    )


_METHODS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
}


class LogObserver(Observer):
    """Turns closed requests and findings into structlog events (see the module doc)."""

    name = "logs"

    def __init__(self, settings: LogSettings) -> None:
        self.settings = settings
        self._app_logger = structlog.get_logger("depstrace")
        self._own_logger: Any = None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, quiet: bool = False
    ) -> LogObserver:
        """An observer configured by ``DEPSTRACE_LOG_LEVEL`` / ``DEPSTRACE_LOG_FORMAT``
        (``quiet``: see :meth:`LogSettings.from_env`)."""
        return cls(LogSettings.from_env(environ, quiet=quiet))

    def _logger(self) -> Any:
        if structlog.is_configured():
            return self._app_logger
        if self._own_logger is None:
            self._own_logger = _private_logger(self.settings)
        return self._own_logger

    def _silent(self) -> bool:
        """Nobody would read an event: the private logger is off and the app has none."""
        return not self.settings.stderr and not structlog.is_configured()

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        getattr(self._logger(), _METHODS[level])(event, **fields)

    def request_closed(self, record: RequestRecord, data: dict[str, Any]) -> None:
        """Log the request (info), its dependencies (debug) and its findings."""
        threshold = self.settings.level
        if threshold > logging.ERROR or (threshold > logging.INFO and not data["findings"]):
            return  # the common case under pytest: nothing to say, nothing built
        if self._silent():
            return
        trace_id, span_id = record.trace_id or data.get("trace_id"), request_span_id(record)
        ids = {"request_id": data["id"], "test": data["test"]}
        trace = {"trace_id": trace_id, "span_id": span_id}
        if threshold <= logging.INFO:
            self._emit(logging.INFO, REQUEST_EVENT, request_fields(data) | trace)
        if threshold <= logging.DEBUG:
            for dep in data["dependencies"]:
                self._emit(logging.DEBUG, DEPENDENCY_EVENT, ids | dependency_fields(dep) | trace)
        where = {"method": data["method"], "path": data["path"], "route": data["route"]}
        for finding in data["findings"]:
            level = _finding_level(finding)
            if level >= threshold:
                self._emit(level, FINDING_EVENT, ids | where | finding_fields(finding) | trace)

    def run_finding(self, data: dict[str, Any]) -> None:
        """Log a finding tied to no request (an override leak, a statement outside one)."""
        level = _finding_level(data)
        if level < self.settings.level or self._silent():
            return
        fields = {
            "request_id": None,
            "test": data.get("test"),
            "method": None,
            "path": None,
            "route": None,
            **finding_fields(data),
            "trace_id": data.get("trace_id"),
            "span_id": data.get("span_id"),
        }
        self._emit(level, FINDING_EVENT, fields)


def _finding_level(finding: Mapping[str, Any]) -> int:
    return logging.ERROR if finding.get("severity") == "error" else logging.WARNING


def request_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a ``depstrace.request`` event, from a closed request record."""
    return {
        "request_id": data["id"],
        "test": data["test"],
        "method": data["method"],
        "path": data["path"],
        "route": data["route"],
        "status": data["status"],
        "duration_ms": data["duration_ms"],
        "app": data["app"]["title"],
        "databases": [
            {
                "engine_id": db["engine_id"],
                "url": db["url"],  # redacted already
                "is_test": db["is_test"],
                "statements": db["statements"],
                "via": db["via"],
            }
            for db in data["databases"]
        ],
        "calls": [
            {"target": c["target"], "allowed": c["allowed"], "count": c["count"]}
            for c in data.get("calls") or ()
        ],
        "findings": [f["code"] for f in data["findings"]],
        "wrong_db": any(not db["is_test"] for db in data["databases"]),
        "trace_id": data.get("trace_id"),
        "span_id": None,
    }


def dependency_fields(dep: Mapping[str, Any]) -> dict[str, Any]:
    """The dependency's own fields of a ``depstrace.dependency`` event."""
    return {
        "dependency": dep["name"],
        "original": dep["original"],
        "resolved": dep["resolved"],
        "overridden": dep["overridden"],
        "cached": dep["cached"],
        "kind": dep["kind"],
        "parent": dep["parent"],
        "duration_ms": dep["duration_ms"],
        "error": dep["error"],
        "engine_id": dep.get("engine_id"),
    }


def finding_fields(finding: Mapping[str, Any]) -> dict[str, Any]:
    """The finding's own fields of a ``depstrace.finding`` event."""
    return {
        "code": finding["code"],
        "severity": finding.get("severity", "warning"),
        "detail": finding.get("message"),
        "hint": finding.get("hint"),
        "engine_id": finding.get("engine_id"),
    }


def request_span_id(record: RequestRecord) -> str | None:
    """The id (16 hex) of the request's span, or None when spans are off.

    The span observer (:mod:`depstrace.spans`) notes it in ``extras["span_id"]``
    when the request closes; while the request runs, the span it started is read
    from its per-request state.
    """
    noted = record.extras.get("span_id")
    if noted is not None:
        return str(noted)
    span = getattr(record.extras.get("spans"), "span", None)
    if span is None:
        return None
    context = span.get_span_context()
    return f"{context.span_id:016x}" if context.is_valid else None


def add_depstrace_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add the running request's depstrace ids to every event.

    Adds ``depstrace_request_id``, ``test``, ``route``, ``trace_id`` and
    ``span_id`` (the request span's id) while depstrace records a request, and
    nothing otherwise; keys the event already has are kept.  Put it before the
    renderer::

        structlog.configure(processors=[depstrace.logs.add_depstrace_context, ...])
    """
    try:
        record = current_request.get()
        if record is not None:
            event_dict.setdefault("depstrace_request_id", record.id)
            event_dict.setdefault("test", record.test)
            event_dict.setdefault("route", record.route)
            event_dict.setdefault("trace_id", record.trace_id)
            event_dict.setdefault("span_id", request_span_id(record))
    except Exception:
        report_internal_error("logs (add_depstrace_context)")
    return event_dict
