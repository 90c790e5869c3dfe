"""``assert_all_resolved_to_test_db``: the trace as a failing test."""

from __future__ import annotations

from typing import Any

from depstrace._context import test_phase
from depstrace._session import active_session
from depstrace._testdb import TestDatabaseRule
from depstrace.report import describe_request, offending, reevaluate

SCOPES = ("test", "session")


class NotInstrumentedError(RuntimeError):
    """depstrace was asked for records while it was not tracing."""


def assert_all_resolved_to_test_db(test_db: Any = None, *, scope: str = "test") -> None:
    """Fail unless every traced request ran its statements on a test database.

    ``test_db`` is a pattern string (comma-separated fnmatch globs or
    ``re:<regex>``), a compiled regex, a callable taking the redacted URL, a
    SQLAlchemy URL or Engine; by default the session's rule (``DEPSTRACE_TEST_DB``,
    else: a word of the database name starts with "test", SQLite in memory or
    under pytest's temporary directories).  ``scope="test"`` checks the requests
    of the running test (setup, call and teardown); ``scope="session"`` every
    request so far.  The AssertionError lists each
    offending request with its dependency chain, database, engine origin,
    finding codes and a fix.

    Under pytest-xdist a worker sees only the requests of the tests it ran:
    ``scope="session"`` there checks that worker's share of the run (passing
    says nothing of the other workers, and a failure names the worker); the
    controller, from its ``pytest_sessionfinish`` on, sees every worker's
    requests, and so does the account at the end of the run.
    """
    __tracebackhide__ = True
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r} is not supported; use scope='test' or scope='session'")
    session = active_session()
    if session is None:
        raise NotInstrumentedError(
            "depstrace is not tracing, so nothing can be asserted: run pytest with "
            "DEPSTRACE=1 (or --depstrace), or call depstrace.instrument() first"
        )
    rule = session.rule if test_db is None else TestDatabaseRule.coerce(test_db)
    if scope == "test":
        nodeid = test_phase().nodeid
        if nodeid is None:
            raise ValueError(
                "scope='test' needs a running pytest test; use scope='session' outside tests"
            )
        requests = session.requests.for_test(nodeid)  # decodes only this test's requests
    else:
        requests = list(session.requests)
    bad = offending(reevaluate(r, rule.matches) for r in requests)
    if not bad:
        return
    lines = [
        f"{len(bad)} of {len(requests)} request{'s' if len(requests) != 1 else ''} "
        f"reached a database that is not a test database ({rule.describe()}):"
    ]
    if scope == "session" and session.worker is not None:
        total = f" of the run's {session.tests_total}" if session.tests_total is not None else ""
        lines.append(
            f"(seen by pytest-xdist worker {session.worker}, which has run "
            f"{session.tests_run}{total} tests: the other workers' requests are not visible "
            "here; the account at the end of the run covers them all)"
        )
    for request in bad:
        lines.append("")
        where = f" in {request['test']} [{request['phase']}]" if request["test"] else ""
        body = describe_request(request)
        lines.append("  " + body[0] + where)
        lines.extend("  " + line for line in body[1:])
    raise AssertionError("\n".join(lines))
