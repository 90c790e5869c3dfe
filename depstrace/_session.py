"""One trace session: ids, the request records, the engines, the trace file.

A session exists between :func:`depstrace.instrument` and
:func:`depstrace.uninstrument`.  Closing a request turns its record into the
JSON-ready dict of docs/format.md exactly once; that dict is what the file,
the summary and the assertion all read, so they cannot disagree.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version
from pathlib import Path
from platform import python_version
from time import perf_counter, time
from typing import Any

from depstrace import _envorigin
from depstrace._context import current_request, test_phase
from depstrace._failopen import report_internal_error
from depstrace._jsonl import JsonlWriter
from depstrace._observers import Observer
from depstrace._order import order_effects
from depstrace._origin import describe_origin
from depstrace._overrides import OverrideLedger
from depstrace._records import SCHEMA, DatabaseUse, EngineInfo, RequestRecord
from depstrace._requestlog import RequestLog
from depstrace._sql import ADMIN_OPERATIONS
from depstrace._testdb import TestDatabaseRule
from depstrace._words import TEST_WORDS, Words
from depstrace.calls import AllowList, OutsideCalls
from depstrace.fastapi import app_id, app_title, title_of
from depstrace.findings import (
    LOOP_MISMATCH,
    external_outside,
    loop_mismatch,
    not_committed,
    outside_request,
    request_findings,
)

Listener = Callable[[dict[str, Any]], None]

_active: TraceSession | None = None


def active_session() -> TraceSession | None:
    """The running session, or None when depstrace is not instrumented."""
    return _active


def set_active_session(session: TraceSession | None) -> None:
    """Make ``session`` the running one (``None`` ends tracing)."""
    global _active
    _active = session


def _version(distribution: str) -> str | None:
    try:
        return distribution_version(distribution)
    except PackageNotFoundError:
        return None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="milliseconds")


class TraceSession:
    """Collects request records for one instrumented run."""

    def __init__(
        self,
        *,
        trace_file: Path | None,
        rule: TestDatabaseRule,
        words: Words = TEST_WORDS,
        allow: AllowList | None = None,
    ) -> None:
        self.rule = rule
        self.allow = allow or AllowList()  # hosts tests may call (DEPSTRACE_ALLOW_HOSTS)
        self.outside_calls = OutsideCalls()  # outbound calls outside any request
        self.words = words  # tests and fixtures, or requests and the server process
        # Closed request dicts; all but the most recent are kept on disk (_requestlog).
        self.requests = RequestLog()
        self.engines: dict[str, dict[str, Any]] = {}
        self.listeners: list[Listener] = []
        self.observers: list[Observer] = []
        self.run_findings: list[dict[str, Any]] = []
        self.panels: list[dict[str, Any]] = []  # guard and outside_calls records (HTML page)
        self.ledger = OverrideLedger()
        self._finished: list[str] | None = None
        self._ended = False
        # SESSION_NOT_COMMITTED: engine id -> the request of the running test whose
        # writes a rollback threw away (reset when the test changes).
        self._discarded: dict[str, str] = {}
        self._discarded_test: str | None = None
        self._loop_reported: set[tuple[str, str | None]] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # Statements outside requests, by (engine, test, phase, fixture name and site).
        self._outside: dict[tuple[str, str | None, str, str | None, str | None], DatabaseUse] = {}
        self._outside_fixtures: dict[tuple[str | None, str | None], dict[str, Any] | None] = {}
        # pytest-xdist: the worker this process is (its records are one share of the run),
        # how many tests it ran and how many the run has; set by the pytest plugin.
        self.worker: str | None = None
        self.tests_run = 0
        self.tests_total: int | None = None
        # Records other processes of the run wrote (a controller merging its workers).
        self._merged_errors = 0
        self._merged_notes: list[str] = []
        self._closed = False
        self.writer = JsonlWriter(trace_file) if trace_file is not None else None
        self._write(self.session_record())

    def session_record(self) -> dict[str, Any]:
        """The ``session`` record that starts a trace file (versions, the rule), as of now."""
        return {
            "type": "session",
            "schema": SCHEMA,
            "started": _iso(time()),
            "depstrace": _version("depstrace"),
            "python": python_version(),
            "fastapi": _version("fastapi"),
            "sqlalchemy": _version("sqlalchemy"),
            "test_db_rule": self.rule.describe(),
            "allow_hosts": self.allow.describe(),
        }

    # -- engines ---------------------------------------------------------------

    def is_test(self, engine: EngineInfo) -> bool:
        """Whether ``engine`` matches the session's test-database rule (judged once)."""
        if engine.is_test is None:
            # A creator= engine's URL is not the database: only a rule the user wrote says so.
            trusted = not engine.creator or not self.rule.describe().startswith("default rule")
            engine.is_test = trusted and self.rule.matches(engine.url)
        return engine.is_test

    def on_new_engine(self, engine: EngineInfo) -> None:
        """Write the ``engine`` record the first time an engine is seen."""
        record = engine.to_dict() | {"is_test": self.is_test(engine)}
        with self._lock:
            self.engines[engine.id] = record
        self._write(record)

    # -- requests --------------------------------------------------------------

    def open_request(self, scope: Any, app: Any) -> RequestRecord:
        """Start the record of one ASGI request served by ``app``."""
        running = test_phase()
        ident = app_id(app)
        record = RequestRecord(
            id=f"r{next(self._ids)}",
            type=scope["type"],
            method=scope.get("method", "WEBSOCKET"),
            path=scope.get("root_path", "") + scope.get("path", ""),
            test=running.nodeid,
            phase=running.phase,
            fixture=running.fixture,
            app_id=ident,
            app_title=app_title(app),
            trace_id=_current_trace_id(),
            root_path=scope.get("root_path", ""),
        )
        record.apps.append(ident)
        record.app_objects.append(app)
        if self.observers:
            record.on_solving = self.request_solving
        self._notify("request_opened", record, scope)
        return record

    def request_solving(self, record: RequestRecord) -> None:
        """Tell observers FastAPI began solving ``record``'s dependencies."""
        self._notify("request_solving", record)

    def _notify(self, event: str, *args: Any) -> None:
        """Call ``event`` on every observer; one failing observer breaks nothing."""
        for observer in self.observers:
            try:
                getattr(observer, event)(*args)
            except Exception:
                report_internal_error(f"{observer.name} ({event.replace('_', ' ')})")

    def close_request(self, record: RequestRecord) -> dict[str, Any]:
        """Finish ``record``: databases, findings, file, listeners."""
        record.duration_ms = (perf_counter() - record.started) * 1000.0
        try:
            record.live_findings.extend(self.ledger.check_request(record))
        except Exception:
            report_internal_error("override checks")
        data = self._request_dict(record)
        try:
            self._check_uncommitted(record, data)
        except Exception:
            report_internal_error("session checks")
        found = request_findings(data, self.words) + record.live_findings
        data["findings"] = [f.to_dict() for f in found]
        record.calls, record.provider, record.app_objects = [], None, []  # no live refs kept
        record.cache_seen = None  # FastAPI's dependency cache holds the request's values
        with self._lock:
            self.requests.append(data)
            listeners = list(self.listeners)
        self._write(data)
        for listener in listeners:
            listener(data)
        self._notify("request_closed", record, data)
        return data

    def _check_uncommitted(self, record: RequestRecord, data: dict[str, Any]) -> None:
        if record.test != self._discarded_test:
            self._discarded, self._discarded_test = {}, record.test
        where = f"{record.method} {record.path}"
        for db in data["databases"]:
            earlier = self._discarded.pop(db["engine_id"], None)
            if earlier is not None:
                record.live_findings.append(not_committed(where, db, earlier, self.words))
        succeeded = record.status is not None and 200 <= record.status < 400
        for use in record.databases.values():
            if use.discarded_writes and succeeded:
                self._discarded[use.engine.id] = f"{where} ({record.id})"

    def note_loop_mismatch(self, engine: EngineInfo, detail: str) -> None:
        """A pooled async connection was checked out on another loop than its own."""
        engine_dict = {"engine_id": engine.id, "url": engine.url} | {
            "created_at": engine.created_at,
            "created_phase": engine.created_phase,
        }
        record = current_request.get()
        if record is not None:
            if any(
                f.code == LOOP_MISMATCH and f.engine_id == engine.id for f in record.live_findings
            ):
                return
            where = f"{record.method} {record.path}"
            record.live_findings.append(loop_mismatch(where, engine_dict, detail, self.words))
            return
        running = test_phase()
        if (engine.id, running.nodeid) in self._loop_reported:
            return
        self._loop_reported.add((engine.id, running.nodeid))
        where = f"outside any request ({running.phase})"
        finding = loop_mismatch(where, engine_dict, detail, self.words)
        self.add_run_finding(finding.to_dict() | {"test": running.nodeid, "phase": running.phase})

    # -- findings tied to no request ------------------------------------------------

    def add_run_finding(self, finding: dict[str, Any]) -> None:
        """Record a ``"type": "finding"`` record (an override leak, a statement outside
        any request) and tell observers."""
        data = {"type": "finding", "schema": SCHEMA} | finding
        with self._lock:
            self.run_findings.append(data)
        self._write(data)
        self._notify("run_finding", data)

    # -- tests ---------------------------------------------------------------------------

    def test_started(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        """A pytest test starts (called by the plugin)."""
        self.tests_run += 1
        _envorigin.test_started(nodeid)  # which test left a variable changed (ENGINE_FROM_ENV)
        self._notify("test_started", nodeid, location)

    def test_finished(self, nodeid: str, outcome: str) -> None:
        """A pytest test ended, teardown included (called by the plugin)."""
        self._notify("test_finished", nodeid, outcome)

    def end_of_run(self) -> None:
        """Findings only the whole run can tell (unused overrides); once."""
        if self._ended:
            return
        self._ended = True
        self.flush_outside()
        try:
            for finding in self.ledger.unused():
                self.add_run_finding(finding)
        except Exception:
            report_internal_error("override checks (end of run)")

    def finish_observers(self) -> list[str]:
        """Let every observer flush once; return their lines for the account."""
        self.end_of_run()
        if self._finished is None:
            lines: list[str] = []
            for observer in self.observers:
                try:
                    lines.extend(observer.finish())
                except Exception:
                    report_internal_error(f"{observer.name} (finish)")
            self._finished = lines
        return self._finished

    def _request_dict(self, record: RequestRecord) -> dict[str, Any]:
        databases: list[dict[str, Any]] = []
        for use in list(record.databases.values()):
            if not use.recorded():
                continue
            engine = use.engine
            via = record.provider_of(engine.id)
            databases.append(
                {
                    "url": engine.url,
                    "engine_id": engine.id,
                    "backend": engine.backend,
                    "database": engine.database,
                    "host": engine.host,
                    "port": engine.port,
                    "is_test": self.is_test(engine),
                    "statements": use.statements,
                    "operations": dict(use.operations),
                    "refused": dict(use.refused),
                    "via": via.label if via is not None else None,
                    "via_id": via.id if via is not None else None,
                    "via_callable": via.resolved if via is not None else None,
                    "via_original": via.original if via is not None else None,
                    "via_chain": [n.label for n in record.chain(via)] if via is not None else [],
                    "env_vars": list(engine.env_vars),
                    "env_origins": engine.env_origins,
                    "origin": use.origin or use.connection_origin,
                    "commits": use.commits,
                    "discarded_writes": use.discarded_writes,
                    "created_at": engine.created_at,
                    "created_phase": engine.created_phase,
                    "created_test": engine.created_test,
                }
                | use.unobserved()
            )
        innermost = record.apps[-1]
        return {
            "type": "request",
            "schema": SCHEMA,
            "id": record.id,
            "test": record.test,
            "phase": record.phase,
            "fixture": record.fixture,
            "kind": record.type,
            "method": record.method,
            "path": record.path,
            "route": record.route,
            "endpoint": record.endpoint,
            "status": record.status,
            "error": record.error,
            "started": _iso(record.started_wall),
            "duration_ms": round(record.duration_ms or 0.0, 3),
            "app": {"id": innermost, "title": title_of(innermost)},
            "apps": [{"id": ident, "title": title_of(ident)} for ident in record.apps],
            "provider": (
                {"id": record.provider_id, "title": record.provider_title}
                if record.provider_id is not None
                else None
            ),
            "dependencies": [node.to_dict() for node in record.dependencies],
            "databases": databases,
            "calls": [use.to_dict() for use in list(record.outbound.values())],
            "findings": [],
            "order_effects": _order_effects(record),
            "trace_id": record.trace_id,
        }

    # -- statements outside requests ----------------------------------------------

    def note_outside(self, engine: EngineInfo, operation: str) -> None:
        """Count a statement that ran outside any request (fixture, startup, thread)."""
        running = test_phase()
        fixture = running.fixture
        named = (fixture["name"], fixture["site"]) if fixture is not None else (None, None)
        key = (engine.id, running.nodeid, running.phase, *named)
        use = self._outside.get(key)
        if use is None or use.statements == 0:  # new, or only checked out so far
            with self._lock:
                use = self._outside.setdefault(key, DatabaseUse(engine))
                self._outside_fixtures[named] = fixture
            if engine.is_test is False:
                use.origin = describe_origin(engine.id, endpoint=None, phase="")
            if running.nodeid == self._discarded_test and engine.id in self._discarded:
                earlier = self._discarded.pop(engine.id)
                where = (
                    f"the {running.phase} phase of {running.nodeid}, outside any request,"
                    if running.nodeid
                    else f"code outside any request ({running.phase})"
                )
                engine_dict = {"engine_id": engine.id, "url": engine.url}
                finding = not_committed(where, engine_dict, earlier, self.words)
                self.add_run_finding(
                    finding.to_dict() | {"test": running.nodeid, "phase": running.phase}
                )
        use.statements += 1
        use.operations[operation] = use.operations.get(operation, 0) + 1

    def note_outside_connection(
        self, engine: EngineInfo, control: bool = False
    ) -> DatabaseUse | None:
        """Count a pool checkout outside any request (a fixture's raw_connection()), or
        with ``control``, transaction control seen on one."""
        running = test_phase()
        fixture = running.fixture
        named = (fixture["name"], fixture["site"]) if fixture is not None else (None, None)
        key = (engine.id, running.nodeid, running.phase, *named)
        use = self._outside.get(key)
        if control:
            if use is not None:
                use.controls += 1
            return use
        if use is None:
            with self._lock:
                use = self._outside.setdefault(key, DatabaseUse(engine))
                self._outside_fixtures[named] = fixture
        if use.connections == 0 and engine.is_test is False and use.origin is None:
            use.connection_origin = describe_origin(engine.id, endpoint=None, phase="")
        use.connections += 1
        return use

    def outside_use(self, engine: EngineInfo) -> DatabaseUse | None:
        """What is counted on ``engine`` outside any request in the running test phase."""
        running = test_phase()
        fixture = running.fixture
        named = (fixture["name"], fixture["site"]) if fixture is not None else (None, None)
        return self._outside.get((engine.id, running.nodeid, running.phase, *named))

    def note_outside_commit(self, engine: EngineInfo) -> None:
        """Count a commit outside any request on the statements counted there."""
        running = test_phase()
        fixture = running.fixture
        named = (fixture["name"], fixture["site"]) if fixture is not None else (None, None)
        use = self._outside.get((engine.id, running.nodeid, running.phase, *named))
        if use is not None:
            use.commits += 1

    def flush(self) -> None:
        """Write pending ``outside_request`` records and flush the file (after each test)."""
        self.flush_outside()
        if self.writer is not None:
            self.writer.flush()

    def flush_outside(self) -> None:
        """Write ``outside_request`` (and ``outside_calls``) records for what was counted
        outside requests so far."""
        self._flush_calls()
        with self._lock:
            pending, self._outside = self._outside, {}
        for (_, test, phase, *named), use in pending.items():
            if not use.recorded():
                continue
            data = {
                "type": "outside_request",
                "schema": SCHEMA,
                "test": test,
                "phase": phase,
                "fixture": self._outside_fixtures.get((named[0], named[1])),
                "engine_id": use.engine.id,
                "url": use.engine.url,
                "is_test": self.is_test(use.engine),
                "statements": use.statements,
                "operations": dict(use.operations),
                "refused": dict(use.refused),
                "commits": use.commits,
                "origin": use.origin or use.connection_origin,
                "created_at": use.engine.created_at,
                "created_phase": use.engine.created_phase,
            } | use.unobserved()
            self._write(data)
            if not data["is_test"] and (
                "unobserved_connections" in data
                or not set(use.operations) | set(use.refused) <= ADMIN_OPERATIONS
            ):
                finding = outside_request(data, self.words)
                self.add_run_finding(
                    finding.to_dict()
                    | {"test": test, "phase": phase, "url": use.engine.url}
                    | {k: data[k] for k in ("fixture", "operations", "refused", "commits")}
                )

    def _flush_calls(self) -> None:
        for data in self.outside_calls.drain():
            self._write(data)
            for call in data["calls"]:
                if not call["allowed"]:
                    finding = external_outside(data, call)
                    self.add_run_finding(
                        finding.to_dict()
                        | {k: data[k] for k in ("test", "phase", "fixture")}
                        | {"call": call}
                    )

    # -- other processes of the run ----------------------------------------------------

    def merge(
        self, records: list[dict[str, Any]], *, internal_errors: int = 0, notes: list[str]
    ) -> None:
        """Take in what other processes of this run recorded (a pytest-xdist controller
        merging its workers): written to this file, counted in its summary, and seen by
        ``assert_all_resolved_to_test_db(scope="session")`` from now on."""
        with self._lock:
            for record in records:
                kind = record["type"]
                if kind == "request":
                    self.requests.append(record)
                elif kind == "finding":
                    self.run_findings.append(record)
                elif kind == "engine":  # ids are per process
                    self.engines[f"{record.get('worker')}/{record['id']}"] = record
            self._merged_errors += internal_errors
            self._merged_notes.extend(notes)
        for record in records:
            self._write(record)

    # -- end -------------------------------------------------------------------------

    def close(self, *, internal_errors: int = 0) -> None:
        """Flush, write the ``summary`` record and close the file (once)."""
        if self._closed:
            return
        self._closed = True
        notes = self.finish_observers()
        self.flush_outside()
        summary = {
            "type": "summary",
            "schema": SCHEMA,
            "requests": len(self.requests),
            "wrong_db_requests": self.requests.wrong_db,
            "engines": len(self.engines),
            "internal_errors": internal_errors + self._merged_errors,
        }
        if notes or self._merged_notes:  # said in the account of whoever reads this file
            summary["notes"] = [*notes, *self._merged_notes]
        self._write(summary)
        if self.writer is not None:
            self.writer.close()

    def _write(self, record: dict[str, Any]) -> None:
        if record["type"] in ("guard", "outside_calls"):
            self.panels.append(record)
        if self.writer is not None:
            self.writer.write(record)

    @property
    def trace_error(self) -> str | None:
        """Why the trace file is missing or incomplete (for the account), or None."""
        return self.writer.error if self.writer is not None else None


def _order_effects(record: RequestRecord) -> list[dict[str, Any]]:
    try:
        return order_effects(record)
    except Exception:  # fail open: the request record goes out without them
        report_internal_error("order effects")
        return []


_span_api: Any = None


def _current_trace_id() -> str | None:
    """The trace id of the OpenTelemetry span active here, if any."""
    global _span_api
    if _span_api is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _span_api = False
            return None
        _span_api = trace
    if _span_api is False:
        return None
    context = _span_api.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None
