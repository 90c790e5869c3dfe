"""``instrument()`` / ``uninstrument()``: install and remove every patch, idempotently."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from depstrace import _callables, _config, _envorigin, _failopen
from depstrace._patching import PatchRegistry
from depstrace._session import TraceSession, active_session, set_active_session
from depstrace._testdb import TestDatabaseRule
from depstrace._words import SCRIPT_WORDS, SERVER_WORDS, TEST_WORDS, XDIST_WORKER_WORDS

_patches: PatchRegistry | None = None
_UNSET: Any = object()

Runner = Literal["pytest", "xdist_worker", "server", "script"]
_WORDS = {
    "pytest": TEST_WORDS,
    "xdist_worker": XDIST_WORKER_WORDS,
    "server": SERVER_WORDS,
    "script": SCRIPT_WORDS,
}


def instrument(
    *,
    trace_file: str | os.PathLike[str] | None = _UNSET,
    test_db: Any = None,
    guard: str | None = None,
) -> TraceSession:
    """Start tracing every FastAPI request and SQLAlchemy statement in this process.

    ``trace_file`` is where the JSON Lines trace goes (default: ``DEPSTRACE_FILE``,
    else ``.depstrace/trace.jsonl`` in the working directory; ``None`` writes no
    file).  ``test_db`` is the test-database rule (see
    :func:`depstrace.assert_all_resolved_to_test_db`; default ``DEPSTRACE_TEST_DB``).
    ``guard`` is ``off``, ``writes`` or ``all`` (docs/guard.md; default
    ``DEPSTRACE_GUARD``).  Calling it again while instrumented returns the running
    session unchanged.
    """
    return start(trace_file=trace_file, test_db=test_db, runner="script", guard=guard)


def start(
    *,
    trace_file: str | os.PathLike[str] | None = _UNSET,
    test_db: Any = None,
    runner: Runner,
    guard: str | None = None,
) -> TraceSession:
    """:func:`instrument` for what runs the app.

    ``"pytest"`` (the plugin; ``"xdist_worker"`` in a pytest-xdist worker):
    the end-of-run account is the output, so depstrace's own log lines stay
    off unless ``DEPSTRACE_LOG_LEVEL`` asks;
    ``"server"`` (``depstrace run``): findings speak of requests and the
    server process, not tests and fixtures; ``"script"``: anything else.
    ``guard`` is the guard mode (docs/guard.md; default ``DEPSTRACE_GUARD``).
    """
    global _patches
    running = active_session()
    if running is not None:
        return running
    _envorigin.snapshot()  # the pytest plugin took it earlier, when pytest loaded it
    rule = (
        TestDatabaseRule.from_env(os.environ)
        if test_db is None
        else TestDatabaseRule.coerce(test_db)
    )
    path = _config.trace_file() if trace_file is _UNSET else trace_file
    guard_mode = _config.guard_mode() if guard is None else _config.parse_guard(guard)
    from depstrace.logs import LogObserver

    # Checks DEPSTRACE_LOG_* before a line is written.
    log_observer = LogObserver.from_env(quiet=runner in ("pytest", "xdist_worker"))
    from depstrace.spans import SpanObserver

    span_observer = SpanObserver.from_env()  # checks DEPSTRACE_EXPORTER, OTEL_* the same way
    _failopen.reset()  # before the session: opening its trace file may already warn
    from depstrace import calls

    allow = calls.AllowList.from_env(os.environ)
    session = TraceSession(
        trace_file=None if path is None else Path(path),
        rule=rule,
        words=_WORDS[runner],
        allow=allow,
    )
    patches = PatchRegistry()
    _failopen.internal_errors.clear()  # this session's faults, from installing on
    from depstrace import guard as guard_module

    try:
        from depstrace import fastapi, middleware, sqlalchemy, stores

        guard_module.start(guard_mode, session)  # before the probes: they ask its mode
        sqlalchemy.registry.on_new = session.on_new_engine
        sqlalchemy.install(
            patches,
            session.note_outside,
            session.note_loop_mismatch,
            session.note_outside_commit,
            session.note_outside_connection,
        )
        calls.start(session.outside_calls, allow)  # before the probes: they count at once
        stores.install(patches, session.note_outside)  # drivers: now if imported, else on import
        if fastapi.install(patches):
            middleware.install(patches)
            _track_override_writes(patches, session)
    except BaseException:
        patches.restore()
        from depstrace import _override_writes, stores

        guard_module.stop()
        _override_writes.uninstall()
        stores.uninstall()
        session.close()
        raise
    _patches = patches
    session.observers.insert(0, span_observer)  # first: later observers read its ids
    session.observers.append(log_observer)  # last: it reads the ids the span observer set
    if guard_mode != "off":
        from depstrace.guard import GuardObserver

        session.observers.append(GuardObserver())
    set_active_session(session)
    return session


def _track_override_writes(patches: PatchRegistry, session: TraceSession) -> None:
    """Tell the session's override ledger of every write to ``dependency_overrides``.

    Fail open: without it the ledger's snapshots still see what changed.
    """
    import fastapi as fastapi_module

    from depstrace import _override_writes
    from depstrace.fastapi import tracked_apps

    try:
        _override_writes.install(
            patches, fastapi_module.FastAPI, session.ledger.write, tracked_apps()
        )
    except Exception:
        _failopen.report_internal_error("override write tracking (install)")


def uninstrument() -> TraceSession | None:
    """Stop tracing: restore every patched object, close the trace file.

    Returns the session that ended (its ``requests`` stay readable), or None
    when depstrace was not instrumented.
    """
    global _patches
    session = active_session()
    if session is None:
        return None
    set_active_session(None)
    if _patches is not None:
        _patches.restore()
        _patches = None
    from depstrace import _override_writes, fastapi, guard, sqlalchemy, stores

    _override_writes.uninstall()
    stores.uninstall()
    sqlalchemy.uninstall()
    sqlalchemy.registry.on_new = None
    _callables.clear_cache()
    fastapi.clear_facts()
    _envorigin.forget()  # the next instrument() starts afresh
    session.close(internal_errors=sum(_failopen.internal_errors.values()))
    guard.stop()  # after close: the account lines are read while closing
    return session


def is_instrumented() -> bool:
    """Whether depstrace is tracing now."""
    return active_session() is not None
