"""The pytest plugin (entry point ``depstrace``): on with ``DEPSTRACE=1`` or ``--depstrace``.

Importing this module imports neither FastAPI nor SQLAlchemy; disabled, it
installs nothing.  Enabled, it instruments before the first conftest is
imported (so import-time engines have a creation site), tells the tracer which
test and phase is running, and ends the run with an account of every request
that reached a non-test database.

Under pytest-xdist every worker traces into its own file and says nothing; the
controller merges the workers' files into its own when they are done and gives
the one account of the run.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Generator
from dataclasses import dataclass, field
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
    worker: str | None = None  # this process is pytest-xdist worker ``gw0``...
    # A pytest-xdist controller: the workers it started (id -> their trace file), the
    # run's collection order, and what merging their files found.
    workers: dict[str, Path] = field(default_factory=dict)
    test_order: dict[str, int] = field(default_factory=dict)
    merged: _Merged | None = None


@dataclass
class _Merged:
    problems: list[str]
    internal_errors: int
    notes: list[str]


def _worker_file(trace_file: Path, worker: str) -> Path:
    """Where pytest-xdist worker ``worker`` writes: one file per worker, never two writers."""
    return trace_file.with_name(f"{trace_file.stem}-{worker}{trace_file.suffix}")


@dataclass(frozen=True)
class _Outputs:
    """What the run ends with besides the account (docs/report.md): a gate, an HTML page."""

    fail_on: tuple[str, ...] = ()
    fail_on_source: str = "--depstrace-fail-on"  # where the codes came from, for the message
    html: Path | None = None


_state_key = pytest.StashKey[_PluginState]()
_outputs_key = pytest.StashKey[_Outputs]()
_session_key = pytest.StashKey[pytest.Session]()
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
        "--depstrace-guard",
        default=None,
        choices=_config.GUARD_MODES,
        help="refuse writes (writes) or every statement (all) on databases that are not "
        "test databases; turns tracing on (default: $DEPSTRACE_GUARD, else the "
        "depstrace_guard ini option, else off)",
    )
    parser.addini(
        "depstrace_guard",
        "depstrace guard mode: off, writes or all (docs/guard.md)",
        default="",
    )
    group.addoption(
        "--depstrace-file",
        default=None,
        metavar="PATH",
        help="JSON Lines trace file (default: $DEPSTRACE_FILE, else "
        ".depstrace/trace.jsonl under the rootdir)",
    )
    group.addoption(
        "--depstrace-fail-on",
        default=None,
        metavar="CODES",
        help="exit non-zero when any of these comma-separated finding codes occurs, naming "
        "the tests (WRONG_DB,DI_BYPASS; default: $DEPSTRACE_FAIL_ON, else the "
        "depstrace_fail_on ini option); enables tracing",
    )
    group.addoption(
        "--depstrace-html",
        default=None,
        metavar="PATH",
        help="write the run as one self-contained HTML page (default: $DEPSTRACE_HTML, else "
        "the depstrace_html ini option); enables tracing",
    )
    parser.addini("depstrace_fail_on", "finding codes that fail the run (as --depstrace-fail-on)")
    parser.addini("depstrace_html", "HTML report path, relative to the rootdir")


def _setting(config: pytest.Config, dest: str, env: str) -> tuple[str, str, Path] | None:
    """(value, where it came from, the directory a relative path starts from) of one
    output setting: the command line, else the environment, else the ini file."""
    option = getattr(config.known_args_namespace, dest, None)
    if option:
        return option, f"--{dest.replace('_', '-')}", config.invocation_params.dir
    value = os.environ.get(env, "").strip()
    if value:
        return value, env, config.invocation_params.dir
    value = str(config.getini(dest) or "").strip()
    return (value, dest, config.rootpath) if value else None


def _outputs(config: pytest.Config) -> _Outputs:
    """The run's gate and HTML path; an unknown finding code is a ConfigurationError."""
    from depstrace.gate import parse_codes

    outputs = _Outputs()
    fail_on = _setting(config, "depstrace_fail_on", "DEPSTRACE_FAIL_ON")
    if fail_on is not None:
        codes = parse_codes(fail_on[0], source=fail_on[1])
        outputs = _Outputs(codes, fail_on[1])
    html = _setting(config, "depstrace_html", "DEPSTRACE_HTML")
    if html is not None:
        path = html[2] / Path(html[0]).expanduser()
        outputs = _Outputs(outputs.fail_on, outputs.fail_on_source, path)
    return outputs


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """Decide whether to trace and, if so, instrument before conftests are imported."""
    before = test_phase()
    try:
        enabled = _config.parse_enabled()
        namespace = early_config.known_args_namespace
        guard = _guard_mode(early_config)
        enabled = (
            enabled
            or guard != "off"
            or any(
                getattr(namespace, name, None)
                for name in ("depstrace", "depstrace_fail_on", "depstrace_html")
            )
        )
        if not enabled:
            _envorigin.forget()  # disabled: keep nothing
            return
        option = getattr(namespace, "depstrace_file", None)
        trace_file = Path(option) if option else _config.trace_file(root=early_config.rootpath)
        # workerinput is set only after this hook; the variable is set before it.
        worker = os.environ.get("PYTEST_XDIST_WORKER") or None
        if worker:
            trace_file = _worker_file(trace_file, worker)
        from depstrace import _failopen
        from depstrace._instrument import start
        from depstrace._testdb import TestDatabaseRule

        if early_config.inipath is not None:  # pytest-env's `env` lines live there
            _envorigin.note_config_files([early_config.inipath])
        rule = TestDatabaseRule.from_env(os.environ, temp_dirs=_basetemp(early_config))
        outputs = _outputs(early_config)
        _failopen.hold_warnings(True)  # said in the account, never in a test's logs
        previous = set_test_phase(None, "startup")
        session = start(
            trace_file=trace_file,
            test_db=rule,
            runner="xdist_worker" if worker else "pytest",
            guard=guard,
        )
        session.worker = worker
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
    early_config.stash[_state_key] = _PluginState(session, trace_file, previous, worker)
    early_config.stash[_outputs_key] = outputs


def pytest_sessionstart(session: pytest.Session) -> None:
    """Keep the session: a failed gate sets its exit status at the end of the run."""
    if _state_key in session.config.stash:
        session.config.stash[_session_key] = session


def _guard_mode(config: pytest.Config) -> str:
    """``--depstrace-guard``, else ``DEPSTRACE_GUARD``, else the ``depstrace_guard`` ini
    option, else off (docs/guard.md)."""
    option = getattr(config.known_args_namespace, "depstrace_guard", None)
    if option:
        return str(option)
    if os.environ.get("DEPSTRACE_GUARD", "").strip():
        return _config.guard_mode()
    ini = str(config.getini("depstrace_guard") or "")
    return _config.parse_guard(ini, source="depstrace_guard (ini option)")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``depstrace_allow_db`` marker (also when tracing is off, for
    ``--strict-markers``)."""
    config.addinivalue_line(
        "markers",
        "depstrace_allow_db(pattern, ...): let this test touch databases matching the "
        "patterns although depstrace's guard is on (docs/guard.md)",
    )


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
        with _allowances(item):
            yield
    finally:
        from depstrace._failopen import report_internal_error

        try:
            state.session.ledger.test_finished(item.nodeid)  # what it left registered leaked
        except Exception:
            report_internal_error("override snapshot")
        state.session.test_finished(item.nodeid, item.stash.get(_outcome_key, "passed"))


def _allowances(item: pytest.Item) -> contextlib.ExitStack[bool | None]:
    """``allow_db`` for each ``depstrace_allow_db`` marker of ``item`` (guard on only)."""
    from depstrace import guard

    stack = contextlib.ExitStack()
    if guard.mode() == "off":
        return stack
    for marker in item.iter_markers("depstrace_allow_db"):
        for pattern in marker.args:
            shown = repr(pattern) if isinstance(pattern, str) else type(pattern).__name__
            source = f"marker depstrace_allow_db({shown})"
            stack.enter_context(guard.allow_db(pattern, source=source))
    return stack


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
        state.session.tests_total = len(session.items)
        _snapshot(state, "import")


# -- pytest-xdist: the controller merges its workers' trace files into one account --------
# These hooks exist only when pytest-xdist is installed, hence optionalhook.


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Remember each worker the controller starts (replacements too), and clear the file
    a worker of an earlier run left under its name, so only this run's records merge."""
    state = node.config.stash.get(_state_key, None)
    if state is None:
        return
    worker = str(node.workerinput["workerid"])
    path = state.workers[worker] = _worker_file(state.trace_file, worker)
    try:
        path.unlink(missing_ok=True)
    except OSError:
        from depstrace._failopen import report_internal_error

        report_internal_error("pytest-xdist (stale worker file)")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Keep the run's collection order: merged records follow it, as a serial run's do."""
    state = node.config.stash.get(_state_key, None)
    if state is not None and not state.test_order:
        state.test_order = {nodeid: index for index, nodeid in enumerate(ids)}


# trylast: the innermost wrapper, so a worker's file is closed before pytest-xdist's own
# wrapper tells the controller the worker has finished.
@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, Any, None]:
    """A controller merges its workers' files before anyone reads the account; a worker
    closes its file after the session fixtures' teardown, before it tells the controller
    it has finished."""
    state = session.config.stash.get(_state_key, None)
    if state is not None and state.workers:
        _merge_workers(state)
    yield
    if state is not None and state.worker:
        from depstrace import _failopen

        try:
            state.session.close(internal_errors=sum(_failopen.internal_errors.values()))
        except Exception:  # a full disk: the controller will say the trace is unfinished
            _failopen.report_internal_error("pytest-xdist (closing the worker's trace file)")


def _merge_workers(state: _PluginState) -> None:
    """Append every worker's records (tagged ``worker``) to the controller's trace file."""
    from depstrace._failopen import report_internal_error
    from depstrace._merge import in_test_order, read_worker
    from depstrace._records import SCHEMA

    try:
        state.session.end_of_run()  # the controller's own findings first
        traces = [read_worker(path, worker) for worker, path in state.workers.items()]
        records = in_test_order((r for t in traces for r in t.records), state.test_order)
        summaries = [t.summary for t in traces if t.summary is not None]
        notes = [n for s in summaries for n in s.get("notes", ())]
        errors = sum(s["internal_errors"] for s in summaries)
        workers = {"type": "workers", "schema": SCHEMA, "workers": [t.entry() for t in traces]}
        state.session.merge([*records, workers], internal_errors=errors, notes=notes)
        state.session.flush()
        state.merged = _Merged([p for t in traces for p in t.problems], errors, notes)
    except Exception:
        report_internal_error("pytest-xdist (merging the workers' trace files)")
        state.merged = _Merged(
            [
                "depstrace could not merge the pytest-xdist workers' trace files (see the "
                "'depstrace' logger); they are kept: depstrace report "
                f"'{_worker_file(state.trace_file, 'gw*')}'"
            ],
            0,
            [],
        )
        return
    for path in state.workers.values():  # their records now live in the merged file
        try:
            path.unlink(missing_ok=True)
        except OSError:
            report_internal_error("pytest-xdist (removing a merged worker file)")


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
    """End the run with the account of requests that reached a non-test database.

    A pytest-xdist worker says nothing: the controller's account covers every worker.
    """
    state = config.stash.get(_state_key, None)
    if state is None:
        if _off_key in config.stash:
            terminalreporter.write_sep("=", "depstrace", yellow=True)
            terminalreporter.write_line(config.stash[_off_key], yellow=True)
        return
    if state.worker:
        return
    from depstrace import _failopen
    from depstrace._merge import combine
    from depstrace._redact import redact_text
    from depstrace.report import EXIT_CLEAN, EXIT_FINDINGS, summary_lines, verdict

    try:
        # Spans first and then the file: the account says if either failed.
        notes = state.session.finish_observers()
        _flush(state)
        session = state.session
        merged = state.merged or _Merged([], 0, [])
        run = combine(
            ((r.get("worker"), r) for r in [*session.requests, *session.run_findings]),
            rule=session.rule.describe(),
            internal_errors=sum(_failopen.internal_errors.values()) + merged.internal_errors,
            notes=[*notes, *merged.notes],
            problems=merged.problems,
        )
        status = verdict(run.requests, run.run_findings, damaged=bool(run.problems)).status
        lines = summary_lines(
            run.requests,
            trace_file=None if session.trace_error else str(state.trace_file),
            internal_errors=run.internal_errors,
            rule=run.rule,
            run_findings=run.run_findings,
            problems=run.problems,
            verbosity=config.getoption("verbose"),
            width=terminalreporter._tw.fullwidth,  # what pytest's own summary lines fit
            warnings=list(_failopen.warnings),
        )
    except Exception as exc:  # the account is depstrace's too: a fault costs one line
        terminalreporter.write_sep("=", "depstrace", yellow=True)
        reason = f"{type(exc).__name__}: {redact_text(str(exc))}"
        terminalreporter.write_line(f"depstrace: no account: {reason}", yellow=True)
        return
    terminalreporter.write_sep(
        "=",
        "depstrace",
        red=status == EXIT_FINDINGS,
        green=status == EXIT_CLEAN,
        yellow=status not in (EXIT_CLEAN, EXIT_FINDINGS),
    )
    for line in lines:
        terminalreporter.write_line(line)
    for line in run.notes:
        terminalreporter.write_line(line, yellow=True)
    outputs = config.stash.get(_outputs_key, _Outputs())
    try:
        gate = _gate(config, run, outputs) if outputs.fail_on else []
    except Exception as exc:  # depstrace's own fault: one line, the run's status stands
        from depstrace._redact import redact_text

        reason = f"{type(exc).__name__}: {redact_text(str(exc))}"
        terminalreporter.write_line(f"depstrace: the gate could not run: {reason}", yellow=True)
        gate = []
    for line in gate:
        terminalreporter.write_line(line, red=True)
    if outputs.html is not None:
        said = _html(outputs.html, run, state, account=lines, gate=gate, status=status)
        terminalreporter.write_line(said, yellow=said.startswith("depstrace: no "))


def _gate(config: pytest.Config, run: Any, outputs: _Outputs) -> list[str]:
    """Fail the run when a gated finding code occurred; the lines naming the tests."""
    from depstrace.gate import gate_lines, gated

    found = gated(run.requests, run.run_findings, outputs.fail_on)
    session = config.stash.get(_session_key, None)
    if found and session is not None and session.exitstatus in (0, 5):  # OK, NO_TESTS
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return gate_lines(found, outputs.fail_on, option=outputs.fail_on_source)


def _html(
    path: Path,
    run: Any,
    state: _PluginState,
    *,
    account: list[str],
    gate: list[str],
    status: int,
) -> str:
    """Write the HTML report of the run and say where; a failure costs that line only."""
    trace = None if state.session.trace_error else str(state.trace_file)
    try:
        from depstrace.html_report import HtmlReport
        from depstrace.report import headline, verdict

        judged = verdict(run.requests, run.run_findings, damaged=bool(run.problems))
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as file:
            page = HtmlReport(file)
            for engine in list(state.session.engines.values()):
                page.add(engine.get("worker"), engine)
            for request in run.requests:
                page.add(request.get("worker"), request)
            for record in list(state.session.panels):  # guard, outside_calls
                page.add(record.get("worker"), record)
            page.finish(
                headline=headline(judged, trace),
                account=account,
                run_findings=run.run_findings,
                problems=run.problems,
                gate=gate,
                trace=trace,
                tests=judged.tests,
                status=status,
            )
    except Exception as exc:
        from depstrace._redact import redact_text

        return f"depstrace: no HTML report: {type(exc).__name__}: {redact_text(str(exc))}"
    return f"depstrace: HTML report: {path}"


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
