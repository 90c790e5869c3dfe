"""The end-of-run account, golden: grouped by cause, writes first, fixtures named,
every line within the terminal width.

Each suite under ``tests/accounts/`` is copied into a pytester directory and run
in a subprocess with ``DEPSTRACE=1`` and ``COLUMNS`` set.  The apps use relative
SQLite paths (``sqlite:///dev.db``) and the trace file is ``trace.jsonl``, so the
account holds no temporary path and is compared line by line as printed.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from depstrace.account import Tally, distinct_messages, fit, message_lines, writes_lines
from depstrace.cli import main

SUITES = Path(__file__).parent / "accounts"


def run_suite(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    columns: int,
    *args: str,
) -> pytest.RunResult:
    """Run ``tests/accounts/<name>`` traced, ``columns`` wide."""
    shutil.copytree(SUITES / name, pytester.path, dirs_exist_ok=True)
    pytester.makeini("[pytest]\npythonpath = .\nfilterwarnings = ignore::DeprecationWarning\n")
    for variable in ("DEPSTRACE_FILE", "DEPSTRACE_EXPORTER", "DEPSTRACE_LOG_LEVEL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("DEPSTRACE_TEST_DB", "test*")
    monkeypatch.setenv("COLUMNS", str(columns))
    return pytester.runpytest_subprocess("--depstrace-file", "trace.jsonl", *args)


def account(result: pytest.RunResult) -> list[str]:
    """The depstrace section: from its separator to pytest's last line (excluded)."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ depstrace =+", line))
    end = next(i for i in range(len(lines) - 1, start, -1) if re.search(r"\d+ passed", lines[i]))
    return lines[start:end]


MANY_80 = [
    "================================== depstrace ===================================",
    "depstrace: 17 requests wrote to a non-test database and committed (INSERT 17 on",
    "    sqlite:///dev.db).",
    "depstrace: 57 of 57 requests reached a non-test database, in 47 tests. Trace:",
    "    trace.jsonl",
    "test database rule: DEPSTRACE_TEST_DB patterns: test*",
    "",
    "sqlite:///dev.db  [engine e1, created at app.py:10 during import]",
    "  via db=app:get_db (not overridden)",
    "    57 requests in 47 tests: reads 40 (SELECT 40), writes 17 (INSERT 17), 17",
    "        commits",
    "    routes: GET /items/{item_id} -> 200 x30, POST /items -> 201 x17, GET /items",
    "        -> 200 x10",
    "    tests: test_many.py::test_read[*] x30,",
    "        test_many.py::test_create_then_list[*] x10, test_many.py::test_create[*]",
    "        x7",
    "    served by app 'dev' [app1], endpoints app:read_item, app:create_item,",
    "        app:list_items",
    "    WRONG_DB  each request ran 1 statement on sqlite:///dev.db (engine e1,",
    "        created at app.py:10 during import) through dependency 'db'",
    "        (app:get_db); it is not a test database. The engine was built at import",
    "        time, before any fixture could apply the test configuration: create it",
    "        lazily (a cached factory) or from settings read in a fixture",
    "    fix  Override app:get_db on the app that serves each request, or build its",
    "        engine from the test configuration; if this database is in fact a test",
    "        database, say so with DEPSTRACE_TEST_DB.",
    "",
    "why:",
    "  WRONG_DB x57  a statement reached a database that does not match the",
    "      test-database rule (depstrace explain WRONG_DB)",
]

MANY_120 = [
    "====================================================== depstrace =======================================================",
    "depstrace: 17 requests wrote to a non-test database and committed (INSERT 17 on sqlite:///dev.db).",
    "depstrace: 57 of 57 requests reached a non-test database, in 47 tests. Trace: trace.jsonl",
    "test database rule: DEPSTRACE_TEST_DB patterns: test*",
    "",
    "sqlite:///dev.db  [engine e1, created at app.py:10 during import]",
    "  via db=app:get_db (not overridden)",
    "    57 requests in 47 tests: reads 40 (SELECT 40), writes 17 (INSERT 17), 17 commits",
    "    routes: GET /items/{item_id} -> 200 x30, POST /items -> 201 x17, GET /items -> 200 x10",
    "    tests: test_many.py::test_read[*] x30, test_many.py::test_create_then_list[*] x10, test_many.py::test_create[*] x7",
    "    served by app 'dev' [app1], endpoints app:read_item, app:create_item, app:list_items",
    "    WRONG_DB  each request ran 1 statement on sqlite:///dev.db (engine e1, created at app.py:10 during import) through",
    "        dependency 'db' (app:get_db); it is not a test database. The engine was built at import time, before any fixture",
    "        could apply the test configuration: create it lazily (a cached factory) or from settings read in a fixture",
    "    fix  Override app:get_db on the app that serves each request, or build its engine from the test configuration; if",
    "        this database is in fact a test database, say so with DEPSTRACE_TEST_DB.",
    "",
    "why:",
    "  WRONG_DB x57  a statement reached a database that does not match the test-database rule (depstrace explain WRONG_DB)",
]


@pytest.mark.parametrize(("columns", "expected"), [(80, MANY_80), (120, MANY_120)])
def test_many_offenders_fit_one_screen(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    columns: int,
    expected: list[str],
) -> None:
    """57 requests in 47 tests on one dev database through one dependency: one block,
    writes first, every line within the width, the whole account under 40 lines."""
    result = run_suite(pytester, monkeypatch, "many", columns)
    result.assert_outcomes(passed=47)
    lines = account(result)
    assert lines == expected
    assert max(len(line) for line in lines) <= columns
    assert len(lines) <= 40


def test_many_offenders_lose_no_fact_of_the_trace(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every distinct finding message (its request generalised), hint, route template,
    endpoint and operation the trace holds is in the grouped account."""
    result = run_suite(pytester, monkeypatch, "many", 1000)
    text = "\n".join(account(result))
    records = [
        json.loads(line) for line in (pytester.path / "trace.jsonl").read_text().splitlines()
    ]
    requests = [r for r in records if r["type"] == "request"]
    assert len(requests) == 57
    for request in requests:
        where = f"{request['method']} {request['path']}"
        assert f"{request['method']} {request['route']} -> {request['status']}" in text
        assert request["endpoint"] in text
        for finding in request["findings"]:
            assert finding["message"].replace(where, "each request") in text
            assert finding["hint"].replace(where, "each request") in text
        for db in request["databases"]:
            assert all(verb in text for verb in db["operations"])


MIXED_80 = [
    "================================== depstrace ===================================",
    "depstrace: 1 request wrote to a non-test database and committed (INSERT 1,",
    "    UPDATE 1 on sqlite:///prod.db).",
    "depstrace: fixtures 'seed', 'counted' wrote to a non-test database outside any",
    "    request and committed (INSERT 1, DELETE 1 on sqlite:///prod.db).",
    "depstrace: 4 of 6 requests reached a non-test database, in 4 tests. Trace:",
    "    trace.jsonl",
    "test database rule: DEPSTRACE_TEST_DB patterns: test*",
    "",
    "sqlite:///prod.db  [engine e1, created at app.py:10 during import]",
    "  via no dependency: opened outside Depends",
    "    3 requests in 3 tests: reads 2 (SELECT 2), writes 2 (INSERT 1, UPDATE 1), 1",
    "        commit",
    "    POST /orders -> 201 in test_shop.py::test_order",
    "    GET /stats -> 200 in test_shop.py::test_stats",
    "    GET /stats -> 200 in test_shop.py::test_stats_again",
    "    served by app 'shop' [app1], endpoints app:create_order, app:stats",
    "    WRONG_DB  each request ran statements on sqlite:///prod.db (engine e1,",
    "        created at app.py:10 during import) through no dependency of this",
    "        request; it is not a test database",
    "    DI_BYPASS  each request used engine e1 (sqlite:///prod.db) although no",
    "        dependency of the request provided it: the session was opened outside",
    "        Depends (a module-level SessionLocal, a middleware, a service or a",
    "        background task), so app.dependency_overrides cannot replace it.",
    "      - It was reached from a background task (after the response was sent):",
    "          app.py:30 in app:audit(), through module-level app.SessionLocal. [POST",
    "          /orders]",
    "      - It was reached from the endpoint itself, app.py:45 in app:stats(),",
    "          through module-level app.SessionLocal. [GET /stats]",
    "    fix  Take the session from a dependency (Depends(get_db)) and pass it on",
    "        instead of opening it from a module-level engine, or point that engine",
    "        at the test database in a fixture.",
    "  via db=app:get_db (not overridden)",
    "    1 request in 1 test: reads 1 (SELECT 1), no writes",
    "    GET /admin/report -> 200 in test_shop.py::test_report",
    "    served by app 'admin' [app2] mounted in 'shop' [app1], endpoint app:report",
    "    WRONG_DB  GET /admin/report ran 1 statement on sqlite:///prod.db (engine e1,",
    "        created at app.py:10 during import) through dependency 'db'",
    "        (app:get_db); it is not a test database. The engine was built at import",
    "        time, before any fixture could apply the test configuration: create it",
    "        lazily (a cached factory) or from settings read in a fixture",
    "    OVERRIDE_NOT_VISIBLE  GET /admin/report: dependency 'db' (app:get_db) ran",
    "        unreplaced: app 'admin' [app2] served the request and consulted its own",
    "        dependency_overrides, but the override conftest:override_get_db is",
    "        registered on 'shop' [app1], the parent app it is mounted in; the",
    "        override was set at conftest.py:35",
    "    fix  Override app:get_db on the app that serves GET /admin/report, or build",
    "        its engine from the test configuration; if this database is in fact a",
    "        test database, say so with DEPSTRACE_TEST_DB.",
    "    fix  Register the override on the app that serves the route ('admin': a",
    "        mounted app is its own overrides provider), or make the test client use",
    "        the same app instance the override was set on.",
    "",
    "other findings:",
    "  DB_OUTSIDE_REQUEST  session-scoped fixture 'seed' (conftest.py:26) setup:",
    "      writes 1 (INSERT 1), 1 commit",
    "    1 statement ran on sqlite:///prod.db (engine e1, created at app.py:10 during",
    "        import) outside any request, during the setup of session-scoped fixture",
    "        'seed' (conftest.py:26): that fixture used a non-test database directly.",
    "        Reached from conftest.py:29 in conftest:seed(), through module-level",
    "        conftest.SessionLocal.",
    "    fix  Point the engine used by fixtures and startup code at the test database",
    "        (the same override the routes get), or create it from the test",
    "        configuration.",
    "  DB_OUTSIDE_REQUEST  module-scoped fixture 'counted' (test_shop.py:6) setup:",
    "      reads 1 (SELECT 1), no writes",
    "    1 statement ran on sqlite:///prod.db (engine e1, created at app.py:10 during",
    "        import) outside any request, during the setup of module-scoped fixture",
    "        'counted' (test_shop.py:6): that fixture used a non-test database",
    "        directly. Reached from test_shop.py:9 in test_shop:counted(), through",
    "        module-level test_shop.SessionLocal.",
    "    fix  Point the engine used by fixtures and startup code at the test database",
    "        (the same override the routes get), or create it from the test",
    "        configuration.",
    "  DB_OUTSIDE_REQUEST  module-scoped fixture 'counted' (test_shop.py:6) teardown:",
    "      writes 1 (DELETE 1), 1 commit",
    "    1 statement ran on sqlite:///prod.db (engine e1, created at app.py:10 during",
    "        import) outside any request, during the teardown of module-scoped",
    "        fixture 'counted' (test_shop.py:6): that fixture used a non-test",
    "        database directly. Reached from test_shop.py:10 in test_shop:counted(),",
    "        through module-level test_shop.SessionLocal.",
    "    fix  Point the engine used by fixtures and startup code at the test database",
    "        (the same override the routes get), or create it from the test",
    "        configuration.",
    "",
    "why:",
    "  WRONG_DB x4              a statement reached a database that does not match",
    "      the test-database rule (depstrace explain WRONG_DB)",
    "  DI_BYPASS x3             a session was opened outside Depends, where overrides",
    "      cannot reach it (depstrace explain DI_BYPASS)",
    "  OVERRIDE_NOT_VISIBLE x1  an override sits on another app than the one serving",
    "      the route (a mount parent, a second instance) (depstrace explain",
    "      OVERRIDE_NOT_VISIBLE)",
    "  DB_OUTSIDE_REQUEST x3    a non-test database was used outside any request",
    "      (depstrace explain DB_OUTSIDE_REQUEST)",
]


def test_mixed_suite_account(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clean requests stay silent; the bypasses share a block (their sites listed), the
    mounted app has its own; writes come first; fixtures are named with scope and site."""
    result = run_suite(pytester, monkeypatch, "mixed", 80)
    result.assert_outcomes(passed=6)
    lines = account(result)
    assert lines == MIXED_80
    assert max(len(line) for line in lines) <= 80


def test_mixed_suite_wide_terminal(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 120 columns the same account wraps later: the same words, fewer lines."""
    result = run_suite(pytester, monkeypatch, "mixed", 120)
    lines = account(result)
    assert max(len(line) for line in lines) <= 120
    assert len(lines) < len(MIXED_80)
    assert " ".join(" ".join(lines[1:]).split()) == " ".join(" ".join(MIXED_80[1:]).split())


def test_quiet_is_one_line_per_group(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-q: the writes and the headline, then one line per group, no paragraphs."""
    result = run_suite(pytester, monkeypatch, "mixed", 120, "-q")
    assert account(result) == [
        "====================================================== depstrace =======================================================",
        "depstrace: 1 request wrote to a non-test database and committed (INSERT 1, UPDATE 1 on sqlite:///prod.db).",
        "depstrace: fixtures 'seed', 'counted' wrote to a non-test database outside any request and committed (INSERT 1, DELETE 1",
        "    on sqlite:///prod.db).",
        "depstrace: 4 of 6 requests reached a non-test database, in 4 tests. Trace: trace.jsonl",
        "test database rule: DEPSTRACE_TEST_DB patterns: test*",
        "sqlite:///prod.db [engine e1] via no dependency: opened outside Depends: 3 requests in 3 tests; reads 2 (SELECT 2),",
        "    writes 2 (INSERT 1, UPDATE 1), 1 commit; WRONG_DB DI_BYPASS",
        "sqlite:///prod.db [engine e1] via db=app:get_db (not overridden): 1 request in 1 test; reads 1 (SELECT 1), no writes;",
        "    WRONG_DB OVERRIDE_NOT_VISIBLE",
        "",
        "other findings:",
        "  DB_OUTSIDE_REQUEST  session-scoped fixture 'seed' (conftest.py:26) setup: writes 1 (INSERT 1), 1 commit",
        "  DB_OUTSIDE_REQUEST  module-scoped fixture 'counted' (test_shop.py:6) setup: reads 1 (SELECT 1), no writes",
        "  DB_OUTSIDE_REQUEST  module-scoped fixture 'counted' (test_shop.py:6) teardown: writes 1 (DELETE 1), 1 commit",
    ]


def test_verbose_is_one_paragraph_per_request(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-v: each offending request under its test, with its writes, as before grouping."""
    result = run_suite(pytester, monkeypatch, "mixed", 120, "-v")
    lines = account(result)
    start = lines.index("test_shop.py::test_order")
    assert lines[start : start + 14] == [
        "test_shop.py::test_order",
        "  POST /orders -> 201",
        "    served by  app 'shop' [app1], endpoint app:create_order",
        "    database   sqlite:///prod.db  [engine e1, created at app.py:10 during import; 2 statements]",
        "    writes     2 (INSERT 1, UPDATE 1), 1 commit",
        "    via        no dependency: opened outside Depends",
        "    WRONG_DB   POST /orders ran 2 statements on sqlite:///prod.db (engine e1, created at app.py:10 during import)",
        "        through no dependency of this request; it is not a test database",
        "    DI_BYPASS  POST /orders used engine e1 (sqlite:///prod.db) although no dependency of the request provided it: the",
        "        session was opened outside Depends (a module-level SessionLocal, a middleware, a service or a background task),",
        "        so app.dependency_overrides cannot replace it. It was reached from a background task (after the response was",
        "        sent): app.py:30 in app:audit(), through module-level app.SessionLocal.",
        "    fix        Take the session from a dependency (Depends(get_db)) and pass it on instead of opening it from a",
        "        module-level engine, or point that engine at the test database in a fixture.",
    ]
    assert [line for line in lines if line.startswith("test_shop.py::")] == [
        "test_shop.py::test_order",
        "test_shop.py::test_stats",
        "test_shop.py::test_stats_again",
        "test_shop.py::test_report",
    ]
    assert "  session-scoped fixture 'seed' (conftest.py:26):" in lines


def test_clean_suite_is_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clean run (a session fixture's request included) is the headline alone."""
    result = run_suite(pytester, monkeypatch, "clean", 80)
    result.assert_outcomes(passed=2)
    assert account(result) == [
        "================================== depstrace ===================================",
        "depstrace: 3 requests in 2 tests, all on test databases. Trace: trace.jsonl",
    ]


def test_fixture_is_recorded_on_requests_and_outside_statements(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records made while a fixture sets up or tears down carry it as {name, scope, site};
    the test's own requests carry null."""
    run_suite(pytester, monkeypatch, "clean", 80).assert_outcomes(passed=2)
    records = [
        json.loads(line) for line in (pytester.path / "trace.jsonl").read_text().splitlines()
    ]
    requests = [(r["test"], r["method"], r["fixture"]) for r in records if r["type"] == "request"]
    fixture = {"name": "client", "scope": "session", "site": "conftest.py:27"}
    assert requests == [
        ("test_clean.py::test_list", "POST", fixture),
        ("test_clean.py::test_list", "GET", None),
        ("test_clean.py::test_create", "POST", None),
    ]


def test_cli_report_groups_and_verbose_lists(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`depstrace report` prints the grouped account of a trace file, `--verbose` the
    per-request one, both fitted to COLUMNS."""
    run_suite(pytester, monkeypatch, "many", 80).assert_outcomes(passed=47)
    trace = str(pytester.path / "trace.jsonl")
    monkeypatch.setenv("COLUMNS", "100")
    capsys.readouterr()  # what pytester printed
    assert main(["report", trace]) == 1
    grouped = capsys.readouterr().out.splitlines()
    assert grouped[0] == (
        "depstrace: 17 requests wrote to a non-test database and committed (INSERT 17 on "
        "sqlite:///dev.db)."
    )
    assert (
        "    routes: GET /items/{item_id} -> 200 x30, POST /items -> 201 x17, GET /items -> 200 x10"
        in grouped
    )
    assert len(grouped) < 30
    assert main(["report", "--verbose", trace]) == 1
    detailed = capsys.readouterr().out.splitlines()
    assert detailed[0] == grouped[0]
    assert sum(line.startswith("test_many.py::") for line in detailed) == 47
    assert sum(line.startswith("    WRONG_DB   ") for line in detailed) == 57
    assert max(len(line) for line in grouped + detailed) <= 100


# -- the hard parts, directly ------------------------------------------------------------


def test_tally_counts_writes_and_ddl_but_not_administration() -> None:
    """DML and DDL are writes; CREATE DATABASE and pg_database lookups are not."""
    tally = Tally()
    tally.add({"SELECT": 2, "INSERT": 1, "CREATE": 1, "CREATE DATABASE": 1}, 1)
    tally.add({"UPDATE": 2, "SELECT pg_database": 1}, 0)
    assert tally.writes == {"INSERT": 1, "CREATE": 1, "UPDATE": 2}
    assert tally.describe() == (
        "reads 4 (SELECT 2, CREATE DATABASE 1, SELECT pg_database 1), "
        "writes 4 (INSERT 1, CREATE 1, UPDATE 2), 1 commit"
    )
    assert Tally({"SELECT": 1}).describe() == "reads 1 (SELECT 1), no writes"
    assert Tally({"DELETE": 1}).describe() == "writes 1 (DELETE 1), no commit"


def _request(path: str, operations: dict[str, int], commits: int, url: str) -> dict[str, object]:
    return {
        "method": "POST",
        "path": path,
        "databases": [
            {"url": url, "is_test": "test" in url, "operations": operations, "commits": commits}
        ],
    }


def test_writes_lines_separate_committed_from_uncommitted_and_ignore_test_databases() -> None:
    """Committed writes come first, then uncommitted ones, each summed per database."""
    requests = [
        _request("/a", {"INSERT": 1}, 1, "sqlite:///prod.db"),
        _request("/b", {"UPDATE": 1, "SELECT": 3}, 1, "sqlite:///prod.db"),
        _request("/c", {"DELETE": 2}, 0, "postgresql://app:***@db/prod"),
        _request("/d", {"INSERT": 9}, 1, "sqlite:///test.db"),
        _request("/e", {"SELECT": 1}, 0, "sqlite:///prod.db"),
    ]
    finding = {"url": "sqlite:///prod.db", "operations": {"TRUNCATE": 1}, "commits": 0}
    assert writes_lines(requests, [finding | {"test": "t.py::t", "phase": "call"}]) == [
        "depstrace: 2 requests wrote to a non-test database and committed "
        "(INSERT 1, UPDATE 1 on sqlite:///prod.db).",
        "depstrace: 1 request wrote to a non-test database without a commit "
        "(DELETE 2 on postgresql://app:***@db/prod).",
        "depstrace: the call phase of t.py::t wrote to a non-test database outside any "
        "request without a commit (TRUNCATE 1 on sqlite:///prod.db).",
    ]
    assert writes_lines(requests[3:], []) == []


def test_distinct_messages_generalise_only_what_merges() -> None:
    """Messages differing only in method and path merge as "each request"; one request's
    message keeps its words; a differing site stays a variant with its routes."""
    same = [
        ("GET /a ran 1 statement on x", "GET /a", None, "GET /a"),
        ("GET /b ran 3 statements on x", "GET /b", None, "GET /b"),
    ]
    assert [(s.text, s.labels) for s in distinct_messages(same)] == [
        ("each request ran statements on x", ["GET /a", "GET /b"])
    ]
    assert distinct_messages(same[:1])[0].text == "GET /a ran 1 statement on x"
    sites = [
        ("GET /a used e1. It was reached from a.py:1.", "GET /a", None, "GET /a"),
        ("GET /b used e1. It was reached from b.py:2.", "GET /b", None, "GET /b"),
        ("GET /a/b used e1. It was reached from a.py:1.", "GET /a/b", None, "GET /a/b"),
    ]
    assert message_lines("DI_BYPASS", distinct_messages(sites), "  ") == [
        "  DI_BYPASS  each request used e1.",
        "    - It was reached from a.py:1. [GET /a, GET /a/b]",
        "    - It was reached from b.py:2. [GET /b]",
    ]


def test_fit_wraps_to_the_width_and_keeps_every_character() -> None:
    """Continuations are indented four past their line; a long URL is broken, not cut."""
    url = "postgresql://app:***@" + "x" * 90 + "/prod"
    lines = fit([f"  database {url} [engine e1]", "short"], 60)
    assert all(len(line) <= 60 for line in lines)
    assert lines[-1] == "short"
    assert lines[0].startswith("  database ")
    assert all(line.startswith("      ") for line in lines[1:-1])
    assert "".join(line.strip() for line in lines[:-1]).replace(" ", "") == (
        f"database{url}[enginee1]"
    )
    assert fit(["x" * 200], None) == ["x" * 200]


def test_statements_while_importing_conftest_are_outside_any_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Statements a conftest runs at import are counted outside any test, not "in 1
    test", and said to run while pytest was starting, before any test."""
    result = run_suite(pytester, monkeypatch, "conftest_import", 1000)
    result.assert_outcomes(passed=1)
    lines = account(result)
    start = lines.index("other findings:")
    assert lines[start + 1 : start + 3] == [
        "  DB_OUTSIDE_REQUEST  1 time outside any test: reads 1 (SELECT 1), no writes",
        "    1 statement ran on sqlite:///dev.db (engine e1, created at conftest.py:5 during "
        "import) outside any request, while pytest was starting (importing conftest.py, "
        "loading plugins), before any test: code run at import, a pytest hook or a thread "
        "used a non-test database directly. Reached from conftest.py:7 in "
        "conftest:<module>(), through module-level conftest.conn.",
    ]
