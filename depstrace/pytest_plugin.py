"""The pytest plugin (entry point ``depstrace``): on with ``DEPSTRACE=1`` or ``--depstrace``.

Importing this module imports neither FastAPI nor SQLAlchemy; disabled, it
installs nothing.  Enabled, it instruments before the first conftest is
imported (so import-time engines have a creation site), tells the tracer which
test and phase is running, and ends the run with an account of every request
that reached a non-test database.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from depstrace import _config, _envorigin
from depstrace._context import (
    TestPhase,
    restore_test_phase,
    set_fixture,
    set_test_phase,
    test_phase,
)

# What the environment held before any conftest or early hook (pytest-env's
# pytest_load_initial_conftests) could change it: hashes only, see _envorigin.
_envorigin.snapshot()

if TYPE_CHECKING:
    from depstrace._session import TraceSession


@dataclass
class _PluginState:
    session: TraceSession
    trace_file: Path
    previous_phase: TestPhase


_state_key = pytest.StashKey[_PluginState]()
_outcome_key = pytest.StashKey[str]()
_off_key = pytest.StashKey[str]()  # why tracing was asked for but could not start


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--depstrace`` and ``--depstrace-file``."""
    group = parser.getgroup("depstrace", "trace FastAPI dependencies and databases")
    group.addoption(
        "--depstrace",
        action="store_true",
        default=False,
        help="trace every FastAPI request and SQL statement (same as DEPSTRACE=1)",
    )
    group.addoption(
        "--depstrace-file",
        default=None,
        metavar="PATH",
        help="JSON Lines trace file (default: $DEPSTRACE_FILE, else "
        ".depstrace/trace.jsonl under the rootdir)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """Decide whether to trace and, if so, instrument before conftests are imported."""
    before = test_phase()
    try:
        enabled = _config.parse_enabled()
        namespace = early_config.known_args_namespace
        enabled = enabled or bool(getattr(namespace, "depstrace", False))
        if not enabled:
            _envorigin.forget()  # disabled: keep nothing
            return
        option = getattr(namespace, "depstrace_file", None)
        trace_file = Path(option) if option else _config.trace_file(root=early_config.rootpath)
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker:  # one file per pytest-xdist worker, never two writers on one file
            trace_file = trace_file.with_name(f"{trace_file.stem}-{worker}{trace_file.suffix}")
        from depstrace import _failopen
        from depstrace._instrument import start
        from depstrace._testdb import TestDatabaseRule

        if early_config.inipath is not None:  # pytest-env's `env` lines live there
            _envorigin.note_config_files([early_config.inipath])
        rule = TestDatabaseRule.from_env(os.environ, temp_dirs=_basetemp(early_config))
        _failopen.hold_warnings(True)  # said in the account, never in a test's logs
        previous = set_test_phase(None, "startup")
        session = start(
            trace_file=trace_file, test_db=rule, runner="xdist_worker" if worker else "pytest"
        )
    except (_config.ConfigurationError, ValueError, TypeError) as exc:
        raise pytest.UsageError(f"depstrace: {exc}") from None
    except Exception as exc:  # depstrace's own fault: the run goes on untraced, and says so
        from depstrace import _failopen
        from depstrace._redact import redact_text

        _failopen.hold_warnings(False)
        restore_test_phase(before)
        early_config.stash[_off_key] = (
            f"depstrace: tracing is off for this run: it could not start: "
            f"{type(exc).__name__}: {redact_text(str(exc))}"
        )
        return
    early_config.stash[_state_key] = _PluginState(session, trace_file, previous)


def _basetemp(config: pytest.Config) -> list[Path] | None:
    """This run's ``--basetemp``: the only temporary directory of the run when given
    (pytest-xdist workers keep theirs below it); None for pytest's default place."""
    given = getattr(config.known_args_namespace, "basetemp", None)
    return None if not given else [config.invocation_params.dir / given]


def _phase(config: pytest.Config, nodeid: str | None, phase: str) -> Generator[None, Any, None]:
    if _state_key not in config.stash:  # disabled: touch nothing
        yield
        return
    previous = set_test_phase(nodeid, phase)
    try:
        yield
    finally:
        restore_test_phase(previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session) -> Generator[None, Any, None]:
    """Statements and engines created while collecting belong to "collection"."""
    yield from _phase(session.config, None, "collection")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, Any, None]:
    """Tell the session's observers a test starts and, after teardown, how it ended."""
    state = item.config.stash.get(_state_key, None)
    if state is None:
        yield
        return
    state.session.test_started(item.nodeid, item.location)
    try:
        yield
    finally:
        from depstrace._failopen import report_internal_error

        try:
            state.session.ledger.test_finished(item.nodeid)  # what it left registered leaked
        except Exception:
            report_internal_error("override snapshot")
        state.session.test_finished(item.nodeid, item.stash.get(_outcome_key, "passed"))


def _snapshot(state: _PluginState, scope: str = "function", test: str | None = None) -> None:
    """Let the override ledger compare every app's overrides with what it knows
    (a fallback: writes reach the ledger when they happen)."""
    from depstrace._failopen import report_internal_error

    try:
        state.session.ledger.snapshot(scope, test)
    except Exception:
        report_internal_error("override snapshot")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Overrides registered while importing conftests and test modules are deliberate."""
    state = session.config.stash.get(_state_key, None)
    if state is not None:
        _snapshot(state, "import")


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(
    fixturedef: Any, request: pytest.FixtureRequest
) -> Generator[None, Any, None]:
    """Attribute overrides a fixture writes (in its setup and its teardown) to its scope,
    and what its setup and teardown run (statements, requests) to the fixture itself."""
    state = request.config.stash.get(_state_key, None)
    if state is None:
        yield
        return
    from depstrace._failopen import report_internal_error

    try:
        fixture = _fixture_info(fixturedef)
    except Exception:  # a fixture object pytest may change: never fail its setup
        report_internal_error("fixture attribution")
        fixture = None
    # Finalizers run last-in first-out: this one, added before the fixture's own
    # teardown is, runs after it and puts back what the one added below replaced.
    replaced: list[dict[str, Any] | None] = []  # what the teardown's fixture replaced
    fixturedef.addfinalizer(lambda: replaced and set_fixture(replaced.pop()))
    ledger = state.session.ledger
    _snapshot(state)
    try:
        ledger.fixture_started(fixturedef.func, fixturedef.scope)
    except Exception:
        report_internal_error("override ledger (fixture)")
    previous = set_fixture(fixture)
    try:
        yield
    finally:
        set_fixture(previous)
        ledger.fixture_finished()
    _snapshot(state, fixturedef.scope)
    fixturedef.addfinalizer(lambda: replaced.append(set_fixture(fixture)))


def _fixture_info(fixturedef: Any) -> dict[str, Any]:
    """``{name, scope, site}`` of a fixture; ``site`` is the ``file:line`` of its function."""
    from depstrace._callables import shorten_path

    site = None
    code = getattr(inspect.unwrap(fixturedef.func), "__code__", None)
    if code is not None:
        site = f"{shorten_path(code.co_filename)}:{code.co_firstlineno}"
    return {"name": fixturedef.argname, "scope": fixturedef.scope, "site": site}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, Any, None]:
    """Remember the worst outcome of the test's phases for :func:`pytest_runtest_protocol`."""
    outcome = yield
    if _state_key not in item.config.stash:
        return
    report = outcome.get_result()
    if report.failed:
        item.stash[_outcome_key] = "failed" if report.when == "call" else "error"
    elif report.skipped and _outcome_key not in item.stash:
        item.stash[_outcome_key] = "skipped"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, None]:
    """Attribute what runs in fixtures' setup to the test."""
    yield from _phase(item.config, item.nodeid, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    """Attribute what the test body runs (and the overrides it sets) to the test."""
    state = item.config.stash.get(_state_key, None)
    if state is not None:
        _snapshot(state, test=item.nodeid)
    yield from _phase(item.config, item.nodeid, "call")
    if state is not None:
        _snapshot(state, test=item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, None]:
    """Attribute fixture teardown to the test, then flush its records to the file."""
    yield from _phase(item.config, item.nodeid, "teardown")
    state = item.config.stash.get(_state_key, None)
    if state is not None:
        _flush(state)


def _flush(state: _PluginState) -> None:
    """Write pending records and flush the trace file; a fault is counted, never raised
    (here it would be a teardown error)."""
    try:
        state.session.flush()
    except Exception:
        from depstrace._failopen import report_internal_error

        report_internal_error("flushing the trace file")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """End the run with the account of requests that reached a non-test database."""
    state = config.stash.get(_state_key, None)
    if state is None:
        if _off_key in config.stash:
            terminalreporter.write_sep("=", "depstrace", yellow=True)
            terminalreporter.write_line(config.stash[_off_key], yellow=True)
        return
    from depstrace import _failopen
    from depstrace._redact import redact_text
    from depstrace.report import offending, summary_lines

    try:
        # Spans first and then the file: the account says if either failed.
        notes = state.session.finish_observers()
        _flush(state)
        requests = list(state.session.requests)
        bad = bool(offending(requests))
        lines = summary_lines(
            requests,
            trace_file=None if state.session.trace_error else str(state.trace_file),
            internal_errors=sum(_failopen.internal_errors.values()),
            rule=state.session.rule.describe(),
            run_findings=list(state.session.run_findings),
            verbosity=config.getoption("verbose"),
            width=terminalreporter._tw.fullwidth,  # what pytest's own summary lines fit
            warnings=list(_failopen.warnings),
        )
    except Exception as exc:  # the account is depstrace's too: a fault costs one line
        terminalreporter.write_sep("=", "depstrace", yellow=True)
        reason = f"{type(exc).__name__}: {redact_text(str(exc))}"
        terminalreporter.write_line(f"depstrace: no account: {reason}", yellow=True)
        return
    terminalreporter.write_sep("=", "depstrace", red=bad, green=not bad)
    for line in lines:
        terminalreporter.write_line(line)
    for line in notes:
        terminalreporter.write_line(line, yellow=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove every patch and close the trace file."""
    state = config.stash.get(_state_key, None)
    if state is None:
        return
    from depstrace import _failopen
    from depstrace._instrument import uninstrument

    _failopen.hold_warnings(False)  # the account is printed: a later fault is logged
    try:
        uninstrument()
    except Exception:
        _failopen.report_internal_error("uninstrument")
    restore_test_phase(state.previous_phase)
    del config.stash[_state_key]
