"""The phrases of findings that depend on what runs the app (tests, a server, a script).

Under pytest a fix happens in a fixture or a conftest; under ``depstrace run``
(a dev server) there are only requests and the server process.  Only the
phrases that differ live here; every other word of a finding is shared, in
:mod:`depstrace.findings`.  A trace session holds one :class:`Words`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Words:
    """The phrases of messages and hints that depend on what runs the app."""

    started: str  # "pytest started": when depstrace took its environment snapshot
    point_engine: str  # how to point a stray engine at the right database
    wrong_db_fix: str  # {original} {where}: the dependency provided a non-test engine
    too_early: str  # why an engine built at import time missed the configuration
    build_later: str  # where to build it instead
    outside: str  # {phase} {test}: who runs statements outside requests
    outside_no_test: str  # {when} {phase}: the same with no test running
    outside_fix: str
    loop_fix: str
    same_scope: str  # "of the same test"
    lost: str  # what SESSION_NOT_COMMITTED cost
    commit_fix: str
    env_fix: str  # {names} {name}
    run_alone: str  # what an order effect means for the request's own test
    run_alone_override: str  # the same when every effect is a leaked override
    order_fix: str  # how to stop one test's objects from reaching the next


TEST_WORDS = Words(
    started="pytest started",
    point_engine="point that engine at the test database in a fixture",
    wrong_db_fix=(
        "Override {original} on the app that serves {where}, or build its engine from "
        "the test configuration; if this database is in fact a test database, say so "
        "with DEPSTRACE_TEST_DB."
    ),
    too_early="before any fixture could apply the test configuration",
    build_later="from settings read in a fixture",
    outside=(
        "during the {phase} phase of {test}: a fixture, the app's lifespan/startup or a "
        "thread used a non-test database directly."
    ),
    outside_no_test="{when}: code run at import, a pytest hook or a thread used a non-test "
    "database directly.",
    outside_fix=(
        "Point the engine used by fixtures and startup code at the test database (the "
        "same override the routes get), or create it from the test configuration."
    ),
    loop_fix=(
        "Create the async engine per event loop (in a fixture or the app's lifespan) or "
        "use poolclass=NullPool in tests, and dispose it when its loop ends; keep one "
        "TestClient (one loop) per engine."
    ),
    same_scope=" of the same test",
    lost="the data the test expects to persist was never saved",
    commit_fix=(
        "Commit in the route or in the session dependency after a successful yield "
        "(session.commit()), or use a rollback fixture that joins the test's outer "
        "transaction (join_transaction_mode='create_savepoint')."
    ),
    env_fix=(
        "Give {names} the test value before anything imports the app: in pytest's "
        "configuration (pytest-env: env = {name}=... under [pytest] or "
        "[tool.pytest.ini_options]), by assignment at the top of the root conftest.py "
        'before the app import (os.environ["{name}"] = ..., not setdefault), or '
        "exported by the CI job that runs the tests. Settings built at import exist "
        "before any fixture runs: monkeypatch.setenv helps only when they are built "
        "lazily (an lru_cache-d get_settings(), then get_settings.cache_clear())."
    ),
    run_alone="run alone, this test builds its own",
    run_alone_override="run alone, this test runs without it",
    order_fix=(
        "Do not let one test's engines, settings or overrides reach the next: clear "
        "cached factories in a fixture (get_settings.cache_clear(), get_engine.cache_clear()) "
        "and set environment variables with monkeypatch.setenv, never os.environ[...] = ..."
    ),
)

# A script that called depstrace.instrument() itself: the test words, its own start.
SCRIPT_WORDS = replace(TEST_WORDS, started="depstrace started")
# A pytest-xdist worker inherits the environment the controller had after importing
# the conftests, so its snapshot cannot tell those settings from exported ones.
XDIST_WORKER_WORDS = replace(
    TEST_WORDS, started="this pytest-xdist worker started (after the controller's conftests ran)"
)

SERVER_WORDS = Words(
    started="the server started",
    point_engine="build that engine from the server's configuration, pointed at the "
    "intended database",
    wrong_db_fix=(
        "Make {original} provide a session on the intended database (build its engine "
        "from the server's configuration); if {where} may use this database, say so "
        "with DEPSTRACE_TEST_DB."
    ),
    too_early="from whatever configuration the process held then",
    build_later="from settings read in the app's lifespan",
    outside=(
        "in the server process ({phase}): the app's lifespan/startup, code run at import "
        "or a background thread used a non-test database directly."
    ),
    outside_no_test=(
        "in the server process ({phase}): the app's lifespan/startup, code run at import "
        "or a background thread used a non-test database directly."
    ),
    outside_fix=(
        "Point the engine used by startup code and background work at the intended "
        "database, or create it from the server's configuration."
    ),
    loop_fix=(
        "Create the async engine per event loop (in the app's lifespan) and dispose it "
        "when its loop ends; code that runs its own loop (asyncio.run in a thread) "
        "needs its own engine or poolclass=NullPool."
    ),
    same_scope="",
    lost="the data later requests expect was never saved",
    commit_fix=(
        "Commit in the route or in the session dependency after a successful yield "
        "(session.commit())."
    ),
    env_fix=(
        "Change or unset {names} where the server gets its environment (the shell, the "
        "process manager, a .env file) and restart it, or build settings and engines "
        "from a source that the server's configuration controls."
    ),
    run_alone="a fresh process builds its own",
    run_alone_override="a fresh process runs without it",
    order_fix=(
        "Build engines and settings from the server's configuration, not from whatever "
        "an earlier request left behind."
    ),
)
