"""``depstrace diff``: matching two runs' requests, what counts as a change, the
explanation, and the command's exit statuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from depstrace.cli import main
from depstrace.diff import Change, compare_requests, diff_requests, diff_runs, explain, render

TEST = "tests/test_items.py::test_list"
EARLIER = "tests/test_admin.py::test_export"


def db(url: str, engine: str = "e1", **fields: Any) -> dict[str, Any]:
    """A ``databases[]`` entry."""
    return {
        "url": url,
        "engine_id": engine,
        "is_test": "test" in url,
        "statements": 1,
        "via": "db",
        "created_at": "app/db.py:12",
        "created_phase": "call",
        "created_test": TEST,
    } | fields


def node(name: str, original: str, resolved: str | None = None) -> dict[str, Any]:
    """A ``dependencies[]`` entry."""
    return {
        "id": 0,
        "name": name,
        "original": original,
        "resolved": resolved or original,
        "overridden": resolved is not None and resolved != original,
        "parent": None,
        "engine_id": None,
    }


def finding(code: str) -> dict[str, Any]:
    """A ``findings[]`` entry."""
    return {"code": code, "severity": "error", "message": "...", "hint": "...", "engine_id": None}


def request(rid: str = "r1", test: str = TEST, **fields: Any) -> dict[str, Any]:
    """A ``request`` record."""
    return {
        "type": "request",
        "schema": 1,
        "id": rid,
        "test": test,
        "phase": "call",
        "method": "GET",
        "path": "/items",
        "route": "/items",
        "status": 200,
        "app": {"id": "app1", "title": "shop"},
        "dependencies": [node("db", "app.db:get_db")],
        "databases": [db("sqlite:///test.db")],
        "findings": [],
        "order_effects": [],
    } | fields


def test_ids_that_differ_between_runs_are_no_change() -> None:
    """Request, engine and app ids are counted per process: another id is no change."""
    a = request("r1", databases=[db("sqlite:///test.db", "e1")])
    b = request("r7", databases=[db("sqlite:///test.db", "e3")], app={"id": "app4", "title": "x"})
    assert compare_requests(a, b) == []
    assert diff_runs([a], [b]).differs is False


def test_engine_compared_by_url_and_creation_site() -> None:
    """The same URL from another line, or made by another test, is another engine."""
    a = request(databases=[db("sqlite:///test.db")])
    b = request(databases=[db("sqlite:///test.db", created_at="app/db.py:30")])
    c = request(databases=[db("sqlite:///test.db", created_test=EARLIER)])
    assert [change.what for change in compare_requests(a, b)] == ["engine"]
    (change,) = compare_requests(a, c)
    assert (change.a["created_by_this_test"], change.b["created_by_this_test"]) == (True, False)


def test_database_override_resolved_and_findings_changes() -> None:
    """Each aspect is one change with both runs' values, in a fixed order."""
    a = request(
        dependencies=[
            node("db", "app.db:get_db", "tests.conftest:test_db"),
            node("s", "app:f", "tests.conftest:fake_f"),
        ]
    )
    b = request(
        dependencies=[node("db", "app.db:get_db"), node("s", "app:f", "tests.test_admin:leaked_f")],
        databases=[db("sqlite:////srv/prod.db")],
        findings=[finding("WRONG_DB"), finding("DI_BYPASS")],
        status=500,
    )
    assert compare_requests(a, b) == [
        Change(
            "database",
            [{"url": "sqlite:///test.db", "is_test": True}],
            [{"url": "sqlite:////srv/prod.db", "is_test": False}],
        ),
        Change(
            "override",
            "db=tests.conftest:test_db (override of app.db:get_db)",
            "db=app.db:get_db (not overridden)",
        ),
        Change(
            "resolved",
            "s=tests.conftest:fake_f (override of app:f)",
            "s=tests.test_admin:leaked_f (override of app:f)",
        ),
        Change("findings", [], ["DI_BYPASS", "WRONG_DB"]),
        Change("status", 200, 500),
    ]


def test_engine_and_override_changes_in_words() -> None:
    """The text names both runs' engines with who made them, both overrides, and an
    override an earlier test left registered as the reason."""
    leaked = {
        "kind": "override",
        "object": "app.db:get_db -> tests.test_admin:prod_db",
        "created_in_test": EARLIER,
        "site": "tests/test_admin.py:7",
    }
    made = {"kind": "engine", "object": "e1", "created_in_test": EARLIER, "site": "app/db.py:12"}
    a = request(dependencies=[node("db", "app.db:get_db", "tests.conftest:test_db")])
    b = request(
        dependencies=[node("db", "app.db:get_db", "tests.test_admin:prod_db")],
        databases=[db("sqlite:///test.db", created_test=EARLIER, created_phase="setup")],
        order_effects=[leaked, made],
    )
    assert render(diff_runs([a], [b]), "a.jsonl", "b.jsonl")[2:] == [
        TEST,
        "  GET /items (call)",
        "    engine    A sqlite:///test.db created at app/db.py:12 during call (by this test)",
        f"              B sqlite:///test.db created at app/db.py:12 during setup (in {EARLIER})",
        "    resolved  A db=tests.conftest:test_db (override of app.db:get_db)",
        "              B db=tests.test_admin:prod_db (override of app.db:get_db)",
        f"  why: in B, the override tests.test_admin:prod_db was registered during {EARLIER} at "
        "tests/test_admin.py:7: run alone, this test runs without it",
        f"    also in B, engine e1 was created during {EARLIER} at app/db.py:12",
    ]


def test_requests_matched_by_route_and_occurrence() -> None:
    """The second GET /items of a test is compared with the other run's second one; a
    request only one run made is a change of its own."""
    first, second = request("r1"), request("r2", databases=[db("sqlite:////srv/prod.db")])
    post = request("r3", method="POST")
    diffs = diff_requests([first, second], [request("r5"), request("r6"), post])
    assert [(d.method, d.occurrence, [c.what for c in d.changes]) for d in diffs] == [
        ("GET", 2, ["database"]),
        ("POST", 1, ["request"]),
    ]
    assert diffs[1].changes == [Change("request", False, True)]


def test_explanations_earliest_test_first_with_fallback_for_old_traces() -> None:
    """Order effects of both runs, earliest earlier test first; a record without
    ``order_effects`` (an older trace) is explained by its databases' ``created_test``."""
    effect = {"kind": "settings", "object": "app:Settings", "created_in_test": "t::second"}
    old = request(databases=[db("sqlite:////srv/prod.db", created_test="t::first")])
    del old["order_effects"]
    new = request(order_effects=[effect])
    order = {"a": {}, "b": {"t::first": 0, "t::second": 1, TEST: 2}}
    found = explain(TEST, [], [new, old], order)
    assert [(e["run"], e["kind"], e["created_in_test"]) for e in found] == [
        ("b", "engine", "t::first"),
        ("b", "settings", "t::second"),
    ]


def test_tests_only_in_one_run_are_listed_not_compared() -> None:
    """A test only one run has is listed; it is no difference."""
    diff = diff_runs([request()], [request(test=EARLIER), request()])
    assert (diff.tests_compared, diff.differs, diff.only_in_a, diff.only_in_b) == (
        1,
        False,
        [],
        [EARLIER],
    )


def write(path: Path, records: list[dict[str, Any]], *, cut: str = "") -> str:
    """A trace file of ``records`` and a summary, plus ``cut`` (a torn last line)."""
    summary = {"type": "summary", "schema": 1, "requests": 0, "internal_errors": 0}
    lines = [json.dumps(r) for r in [{"type": "session", "schema": 1}, *records, summary]]
    path.write_text("\n".join(lines) + "\n" + cut)
    return str(path)


def test_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0 the same, 1 a difference, 2 unreadable or nothing in common; a torn last line is
    read as far as it goes and said on stderr."""
    same = write(tmp_path / "a.jsonl", [request()])
    prod = request(databases=[db("sqlite:////srv/prod.db", created_test=EARLIER)])
    del prod["order_effects"]  # a trace from before order effects: the engine tells
    other = write(tmp_path / "b.jsonl", [prod], cut='{"type": "requ')
    assert main(["diff", same, same]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"depstrace diff: A = {same}, B = {same}: 1 test in both, 0 differ"
    ]
    assert main(["diff", same, other]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"depstrace diff: A = {same}, B = {other}: 1 test in both, 1 differs",
        "",
        TEST,
        "  GET /items (call)",
        "    database  A sqlite:///test.db (test)",
        "              B sqlite:////srv/prod.db (not a test database)",
        f"  why: in B, engine e1 was created during {EARLIER} at app/db.py:12: run alone, "
        "this test builds its own",
    ]
    assert (
        err
        == f"depstrace: note: {other}: last line cut after 14 bytes (a process killed mid-write?); 3 complete records read\n"
    )
    assert main(["diff", same, str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: cannot read" in capsys.readouterr().err
    elsewhere = write(tmp_path / "c.jsonl", [request(test=EARLIER)])
    assert main(["diff", same, elsewhere]) == 2
    assert capsys.readouterr().err == (
        f"depstrace: no test has requests in both {same} and {elsewhere}\n"
    )
    with pytest.raises(SystemExit) as usage:
        main(["diff", same])
    assert usage.value.code == 2


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--format json`` holds the same facts as the text, structured."""
    a = write(tmp_path / "a.jsonl", [request()])
    b = write(tmp_path / "b.jsonl", [request(findings=[finding("WRONG_DB")])])
    assert main(["diff", "--format", "json", a, b]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "a": a,
        "b": b,
        "tests_compared": 1,
        "tests_differing": 1,
        "tests": [
            {
                "test": TEST,
                "requests": [
                    {
                        "phase": "call",
                        "method": "GET",
                        "path": "/items",
                        "occurrence": 1,
                        "changes": [{"what": "findings", "a": [], "b": ["WRONG_DB"]}],
                    }
                ],
                "explanations": [],
            }
        ],
        "only_in_a": [],
        "only_in_b": [],
    }
