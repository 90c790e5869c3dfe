"""Guard mode: refuse a statement on a non-test database before the driver sees it.

``DEPSTRACE_GUARD=writes`` refuses writes (INSERT, UPDATE, DELETE, MERGE, DDL, COPY,
and the COMMIT of a transaction that wrote) on every database the test-database rule
(:mod:`depstrace._testdb`) does not accept; ``all`` refuses every data statement there.
The probes (:mod:`depstrace.sqlalchemy`, :mod:`depstrace.stores.pgdrivers`) classify
each statement as they always do and, only when the guard is on, hand it to
:func:`check`; with the guard off they install their usual, unguarded hooks and this
module's code is never called (docs/guard.md, "Off costs nothing").

Escape hatches: ``@pytest.mark.depstrace_allow_db("pattern")`` and
``with depstrace.allow_db("pattern"):``.  Allowances are process state, not
contextvars: TestClient and uvicorn serve requests in other threads.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from depstrace._context import current_request, test_phase
from depstrace._failopen import report_internal_error
from depstrace._observers import Observer
from depstrace._origin import describe_origin
from depstrace._records import SCHEMA, WRITES
from depstrace._sql import ADMIN_OPERATIONS, TRANSACTION_CONTROL
from depstrace._testdb import TestDatabaseRule
from depstrace._words import TEST_WORDS, XDIST_WORKER_WORDS
from depstrace.findings import describe_fixture, outside_request, request_findings

if TYPE_CHECKING:
    from depstrace._context import TestPhase
    from depstrace._records import DatabaseUse, EngineInfo, RequestRecord
    from depstrace._session import TraceSession

__all__ = ["ENV_VAR", "MODES", "GuardObserver", "GuardRefused", "allow_db"]

ENV_VAR = "DEPSTRACE_GUARD"
MODES = ("off", "writes", "all")

# What changes data or schema, by the operation word depstrace._sql.operation
# gives (CREATE/DROP/ALTER DATABASE, ROLE... are server administration: never refused).
_SCHEMA_CHANGES = frozenset({"CREATE", "DROP", "ALTER", "TRUNCATE", "RENAME", "COMMENT"})
_WRITE_OPERATIONS = WRITES | _SCHEMA_CHANGES | {"COPY", "GRANT", "REVOKE", "VACUUM", "REINDEX"}
# MongoDB write commands, upper-cased as depstrace.stores.mongo counts them (insert,
# update, delete, create, drop are above); an aggregate ending in $out or $merge writes.
_WRITE_OPERATIONS |= {
    "FINDANDMODIFY",
    "CREATEINDEXES",
    "DROPINDEXES",
    "DROPDATABASE",
    "RENAMECOLLECTION",
    "BULKWRITE",
    "COLLMOD",
    "AGGREGATE $OUT",
}
# A CTE or a SELECT INTO can write: "WITH moved AS (DELETE ...) INSERT ...".
_WRITE_WORD = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE|INTO)\b", re.IGNORECASE)
_ENDS = frozenset({"COMMIT", "END"})
_TABLE = re.compile(
    r"\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(?:WITH\b.*?\)\s*)?"
    r"(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM"
    r"|MERGE\s+INTO|TRUNCATE(?:\s+TABLE)?|COPY|(?:CREATE|DROP|ALTER)\s+(?:UNIQUE\s+)?"
    r"(?:TEMP(?:ORARY)?\s+)?(?:TABLE|INDEX|VIEW|SEQUENCE|TYPE|SCHEMA|TRIGGER)"
    r"(?:\s+IF\s+(?:NOT\s+)?EXISTS)?|SELECT\b.*?\bFROM)\s+(\"[^\"]+\"|`[^`]+`|[\w.$\"]+)",
    re.IGNORECASE | re.DOTALL,
)
_WROTE_KEY = "depstrace_guard_wrote"  # in a SQLAlchemy connection's .info


class GuardRefused(RuntimeError):
    """depstrace's guard refused a statement on a database that is not a test database.

    A ``RuntimeError`` (not a driver or SQLAlchemy error, so ``except SQLAlchemyError``
    does not swallow it, and not an ``OSError``, which suites treat as "server down"); the
    message is depstrace's account of the request or fixture that ran it, the finding
    that explains why, the fix and how to allow it on purpose.  ``record`` is the
    ``guard`` record of docs/format.md."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


@dataclass
class _Allowance:
    rule: TestDatabaseRule
    source: str  # 'marker depstrace_allow_db("prod*") on tests/x.py::test_y'


@dataclass
class _Guard:
    mode: str
    session: TraceSession
    events: list[dict[str, Any]] = field(default_factory=list)
    allowed_seen: set[tuple[str, str, str | None]] = field(default_factory=set)
    allowed_counts: dict[tuple[str, str, str | None], int] = field(default_factory=dict)


_guard: _Guard | None = None
_allowances: list[_Allowance] = []
_lock = threading.Lock()
# id(connection) -> (the connection or a weak reference to it, writes let through by an
# allowance since its transaction began); the reference keeps a reused id from matching.
_wrote_on: dict[int, tuple[Any, int]] = {}
# Transaction control and server administration: a per-test-database fixture's own work.
_never_refused: frozenset[str] = TRANSACTION_CONTROL | ADMIN_OPERATIONS


# -- on and off ----------------------------------------------------------------------


def start(mode: str, session: TraceSession) -> None:
    """Turn the guard on for ``session`` (before the probes install) unless ``mode`` is off."""
    global _guard
    _guard = None if mode == "off" else _Guard(mode, session)


def stop() -> None:
    """Turn the guard off (uninstrument); allowances in force stay for their ``with``."""
    global _guard
    _guard = None
    _wrote_on.clear()


def mode() -> str:
    """``off``, ``writes`` or ``all``: what probes installing now must enforce."""
    return "off" if _guard is None else _guard.mode


def events() -> list[dict[str, Any]]:
    """The ``guard`` records of this session so far (refusals, first allowed uses)."""
    return list(_guard.events) if _guard is not None else []


# -- escape hatches ------------------------------------------------------------------


@contextmanager
def allow_db(pattern: object, *, source: str | None = None) -> Iterator[None]:
    """Let statements on databases matching ``pattern`` pass the guard inside the block.

    ``pattern`` is what ``DEPSTRACE_TEST_DB`` accepts (comma-separated fnmatch globs over
    the redacted URL or the database name, ``re:<regex>``), or a compiled regex, a
    callable taking the redacted URL, a SQLAlchemy URL or engine.  What passes is
    recorded as allowed (the account and the trace file say so).  Nests; does nothing
    when the guard is off.  Process-wide while the block runs, so requests TestClient
    serves from its own thread are allowed too."""
    allowance = _Allowance(
        TestDatabaseRule(pattern, source="allow_db"),
        source or f"depstrace.allow_db({_shown(pattern)})",
    )
    with _lock:
        _allowances.append(allowance)
    try:
        yield
    finally:
        with _lock:
            _allowances.remove(allowance)


def _shown(pattern: object) -> str:
    return repr(pattern) if isinstance(pattern, str) else type(pattern).__name__


def _allowed_by(info: EngineInfo) -> _Allowance | None:
    for allowance in reversed(_allowances):
        try:
            if allowance.rule.matches(info.url):
                return allowance
        except Exception:  # a user's callable: it does not allow
            report_internal_error("guard (allow_db pattern)")
    return None


# -- the decision --------------------------------------------------------------------


def refuses(guard_mode: str, operation: str, statement: str) -> bool:
    """Whether ``guard_mode`` refuses ``operation`` (from depstrace's statement
    classification) on a non-test database; transaction control and server
    administration (CREATE DATABASE on a maintenance connection) never are."""
    if operation in _never_refused:
        return False
    if guard_mode == "all":
        return True
    if operation in _WRITE_OPERATIONS:
        return True
    return operation in ("WITH", "SELECT") and _WRITE_WORD.search(statement[:4096]) is not None


def check(
    info: EngineInfo,
    operation: str,
    statement: object,
    connection: Any,
    *,
    table: str | None = None,
) -> None:
    """Raise :class:`GuardRefused` when the guard refuses this statement (the probes call
    this only while the guard is on, right after counting the statement).

    ``connection`` identifies the driver connection, to refuse the COMMIT of a
    transaction that wrote (writes let through by an allowance).  ``table`` is for
    stores whose statements are not SQL (a MongoDB command's collection)."""
    guard = _guard
    if guard is None:
        return
    try:
        if _judged_test(guard, info):
            return
        text = _text(statement)
        if operation in _ENDS or operation == "ROLLBACK":
            wrote = _pending(connection)
            if operation == "ROLLBACK" or not wrote or _allowed_by(info) is not None:
                forget_transaction(connection)
                return
            # Refused, the writes stay pending: a later COMMIT is refused too.
            record = _record(guard, info, "COMMIT", None, "refused")
            record["writes"] = wrote
        else:
            if not refuses(guard.mode, operation, text):
                return
            allowance = _allowed_by(info)
            if allowance is not None:
                if operation not in ("SELECT", "WITH", "SHOW", "PRAGMA", "EXPLAIN"):
                    _wrote_on[id(connection)] = (_reference(connection), _pending(connection) + 1)
                _note_allowed(guard, info, operation, allowance)
                return
            record = _record(guard, info, operation, table or _table(text), "refused")
        _refused(guard, info, operation)
    except Exception:  # the guard's own fault lets the statement through, and says so
        report_internal_error("guard")
        return
    raise GuardRefused(_message(guard, info, record), record)


def _judged_test(guard: _Guard, info: EngineInfo) -> bool:
    """Whether ``info`` is a test database, judged by the session's rule the first time."""
    if info.is_test is None:
        guard.session.is_test(info)
    return bool(info.is_test)


RAW_CONNECTION = "RAW CONNECTION"  # the operation of a refused engine.raw_connection()


def check_raw_connection(info: EngineInfo) -> None:
    """Raise :class:`GuardRefused` for ``engine.raw_connection()`` called by user code on a
    non-test database: statements on a raw DBAPI connection never reach SQLAlchemy's
    events, so the guard cannot judge them one by one (in ``writes`` and ``all`` modes)."""
    guard = _guard
    if guard is None:
        return
    try:
        if _judged_test(guard, info):
            return
        allowance = _allowed_by(info)
        if allowance is not None:
            _note_allowed(guard, info, RAW_CONNECTION, allowance)
            return
        record = _record(guard, info, RAW_CONNECTION, None, "refused")
        request = current_request.get()
        use: DatabaseUse | None
        if request is not None:
            use = request.note_connection(info)
        else:
            use = guard.session.note_outside_connection(info)
        if use is not None:
            use.refused[RAW_CONNECTION] = use.refused.get(RAW_CONNECTION, 0) + 1
    except Exception:  # the guard's own fault lets the connection through, and says so
        report_internal_error("guard")
        return
    raise GuardRefused(_message(guard, info, record), record)


def _refused(guard: _Guard, info: EngineInfo, operation: str) -> None:
    """The refused statement stays counted (it was attempted) but as refused, not as a
    read or write: the account's "wrote to a non-test database" is what reached it, and a
    rollback does not make the refused write a SESSION_NOT_COMMITTED."""
    request = current_request.get()
    session = guard.session
    use = request.databases.get(info.id) if request is not None else session.outside_use(info)
    if use is not None:
        use.refuse(operation)


def check_commit(info: EngineInfo | None, connection_info: dict[str, Any]) -> None:
    """SQLAlchemy's ``commit`` event: refuse when the transaction wrote (allowed) and
    nothing allows the commit."""
    if info is not None:
        check(info, "COMMIT", "", connection_info)


def forget_transaction(connection: Any) -> None:
    """The transaction on ``connection`` ended (SQLAlchemy's ``rollback`` event, a
    ROLLBACK, an allowed COMMIT): what it wrote is no longer pending."""
    _wrote_on.pop(id(connection), None)


def _pending(connection: Any) -> int:
    """Writes let through on ``connection`` since its transaction began."""
    held = _wrote_on.get(id(connection))
    if held is None:
        return 0
    target = held[0]() if isinstance(held[0], weakref.ref) else held[0]
    return held[1] if target is connection else 0


def _reference(connection: Any) -> Any:
    try:
        return weakref.ref(connection)
    except TypeError:  # a SQLAlchemy connection's .info dict: popped when it ends
        return connection


def _text(statement: object) -> str:
    if isinstance(statement, str):
        return statement
    if isinstance(statement, (bytes, bytearray, memoryview)):
        return bytes(statement[:4096]).decode("utf-8", "replace")
    as_string = getattr(statement, "as_string", None)  # psycopg.sql.Composed
    if as_string is not None:
        try:
            return str(as_string(None))
        except Exception:
            return ""
    return ""


def _table(statement: str) -> str | None:
    """The table (or index, view...) a statement names, never a value it carries."""
    match = _TABLE.match(statement[:4096])
    return match.group(1).strip('"`') if match is not None else None


def _note_allowed(guard: _Guard, info: EngineInfo, operation: str, allowance: _Allowance) -> None:
    running = test_phase()
    key = (info.id, allowance.source, running.nodeid)
    with _lock:
        guard.allowed_counts[key] = guard.allowed_counts.get(key, 0) + 1
        first = key not in guard.allowed_seen
        guard.allowed_seen.add(key)
    if first:
        record = _record(guard, info, operation, None, "allowed", allowed_by=allowance.source)
        guard.session._write(record)


def _record(
    guard: _Guard,
    info: EngineInfo,
    operation: str,
    table: str | None,
    action: str,
    *,
    allowed_by: str | None = None,
) -> dict[str, Any]:
    running = test_phase()
    request = current_request.get()
    record: dict[str, Any] = {
        "type": "guard",
        "schema": SCHEMA,
        "action": action,
        "mode": guard.mode,
        "operation": operation,
        "table": table,
        "engine_id": info.id,
        "url": info.url,
        "test": running.nodeid,
        "phase": running.phase,
        "fixture": running.fixture,
        "request": None,
        "allowed_by": allowed_by,
        "findings": [],
    }
    if request is not None:
        record["request"] = {"id": request.id, "method": request.method, "path": request.path}
    with _lock:
        guard.events.append(record)
    return record


# -- the message ---------------------------------------------------------------------


def _message(guard: _Guard, info: EngineInfo, record: dict[str, Any]) -> str:
    """The account of the refused statement; also fills ``record["findings"]`` and writes
    the record to the trace file."""
    words = guard.session.words
    what = record["operation"] + (f" on table {record['table']}" if record["table"] else "")
    if record["operation"] == "COMMIT":
        what = f"COMMIT of a transaction that wrote ({record.get('writes', 1)} allowed writes)"
    lines = [
        f"depstrace guard ({ENV_VAR}={guard.mode}) refused {what} on {info.url} "
        f"(engine {info.id}): it is not a test database by the "
        f"{guard.session.rule.describe()}."
    ]
    if record["operation"] == RAW_CONNECTION:
        lines = [
            f"depstrace guard ({ENV_VAR}={guard.mode}) refused engine.raw_connection() on "
            f"{info.url} (engine {info.id}): it is not a test database by the "
            f"{guard.session.rule.describe()}, and a raw DBAPI connection to a non-test "
            "database cannot be guarded: statements on it bypass SQLAlchemy's events, so "
            "they are not seen one by one."
        ]
    request = current_request.get()
    try:
        findings = _request_findings(guard, request, info) if request else _outside(guard, info)
    except Exception:
        report_internal_error("guard (findings)")
        findings = []
    record["findings"] = [{"code": f.code, "message": f.message} for f in findings]
    running = test_phase()
    if request is not None:
        lines.append(f"  request  {request.method} {request.path} ({_who(running)})")
    else:
        lines.append(f"  outside any request: {_who(running)}")
    for finding in findings:
        lines.append(f"  {finding.code}: {finding.message}")
        lines.append(f"    fix: {finding.hint}")
    pattern = info.database or info.url
    allow = (
        f'@pytest.mark.depstrace_allow_db("{pattern}") on the test, or '
        f'`with depstrace.allow_db("{pattern}"):` around the code'
    )
    if words not in (TEST_WORDS, XDIST_WORKER_WORDS):  # no pytest: no marker
        allow = f'`with depstrace.allow_db("{pattern}"):` around the code'
    lines.append(
        f"  If this database must be touched on purpose: {allow}; if it is a test "
        f"database, say so with DEPSTRACE_TEST_DB; {ENV_VAR}=off turns the guard off."
    )
    guard.session._write(record)
    return "\n".join(lines)


def _who(running: TestPhase) -> str:
    if running.fixture is not None:
        stage = "teardown" if running.phase == "teardown" else "setup"
        return f"{stage} of {describe_fixture(running.fixture)}, test {running.nodeid}"
    if running.nodeid is not None:
        return f"{running.phase} of {running.nodeid}"
    return running.phase


def _request_findings(guard: _Guard, request: RequestRecord, info: EngineInfo) -> list[Any]:
    """What depstrace would say of the request now, about this engine."""
    data = guard.session._request_dict(request)
    found = request_findings(data, guard.session.words) + list(request.live_findings)
    return [f for f in found if f.engine_id in (info.id, None)]


def _outside(guard: _Guard, info: EngineInfo) -> list[Any]:
    running = test_phase()
    use = {
        "test": running.nodeid,
        "phase": running.phase,
        "fixture": running.fixture,
        "statements": 1,
        "url": info.url,
        "engine_id": info.id,
        "origin": describe_origin(info.id, endpoint=None, phase=""),
        "created_at": info.created_at,
        "created_phase": info.created_phase,
    }
    return [outside_request(use, guard.session.words)]


# -- the account ---------------------------------------------------------------------


def account_lines() -> list[str]:
    """Lines for the end-of-run account: every refusal, and what was allowed."""
    guard = _guard
    if guard is None:
        return []
    refused = [e for e in guard.events if e["action"] == "refused"]
    if not guard.events and guard.session.words is TEST_WORDS and not guard.session.tests_run:
        return []  # a pytest-xdist controller: its workers' lines come in their notes
    worker = f" in pytest-xdist worker {guard.session.worker}" if guard.session.worker else ""
    lines = [
        f"depstrace guard ({ENV_VAR}={guard.mode}){worker}: refused {len(refused)} statement"
        + ("" if len(refused) == 1 else "s")
        + " on non-test databases"
        + (":" if refused else ".")
    ]
    for event in refused:
        lines.append("  " + _event_line(event))
    for (engine_id, source, test), count in guard.allowed_counts.items():
        url = next((e["url"] for e in guard.events if e["engine_id"] == engine_id), engine_id)
        lines.append(
            f"  allowed {count} statement{'' if count == 1 else 's'} on {url} "
            f"(engine {engine_id}) by {source}" + (f" in {test}" if test else "")
        )
    return lines


def _event_line(event: dict[str, Any]) -> str:
    what = event["operation"] + (f" {event['table']}" if event["table"] else "")
    request = event["request"]
    where = f"{request['method']} {request['path']}" if request else "outside any request"
    if event["fixture"]:
        where += f", fixture {event['fixture']['name']!r}"
    test = f" in {event['test']}" if event["test"] else ""
    codes = ", ".join(f["code"] for f in event["findings"])
    return f"{what} on {event['url']} ({where}{test})" + (f" [{codes}]" if codes else "")


class GuardObserver(Observer):
    """Puts the guard's lines in the end-of-run account (pytest-xdist workers pass them
    to the controller in their summary's notes)."""

    name = "guard"

    def finish(self) -> list[str]:
        """Every refusal of the run and what was allowed."""
        return account_lines()
