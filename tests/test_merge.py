"""Reading traces back and merging several processes' records into one run
(_jsonl.scan, _merge.combine, _merge.read_worker, _merge.in_test_order)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from depstrace import read_records
from depstrace._jsonl import scan
from depstrace._merge import combine, in_test_order, read_worker


def line(record: dict[str, Any]) -> bytes:
    """One JSON Lines line."""
    return json.dumps(record).encode() + b"\n"


def test_scan_keeps_what_is_readable_and_names_the_rest(tmp_path: Path) -> None:
    """Bad lines are named with their number, a cut last line with its length in bytes
    (a cut may split a UTF-8 character), and every whole record is kept."""
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(
        line({"type": "session"})
        + b"{oops\n"
        + b"\n"
        + b"[1, 2]\n"
        + line({"type": "engine", "url": "sqlite:///caf\u00e9.db"})
        + '{"type": "request", "path": "/caf\u00e9'.encode()[:-1]
    )
    found = scan(trace)
    assert (found.records, found.bad_lines, found.cut_bytes) == (
        [(1, {"type": "session"}), (5, {"type": "engine", "url": "sqlite:///caf\u00e9.db"})],
        [
            f"{trace}:2: not a JSON object (Expecting property name enclosed in double quotes)",
            f'{trace}:4: not a depstrace record (no "type" key)',
        ],
        34,
    )
    assert found.problems()[-1] == (
        f"{trace}: last line cut after 34 bytes (a process killed mid-write?); "
        "2 complete records read"
    )


def test_last_line_without_newline_that_parses_is_whole(tmp_path: Path) -> None:
    """A complete record that only lacks its newline is read, not reported as cut."""
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(line({"type": "session"}) + b'{"type": "summary"}')
    found = scan(trace)
    assert (len(found.records), found.cut_bytes, found.problems()) == (2, None, [])


def test_read_records_keeps_its_contract(tmp_path: Path) -> None:
    """The public reader still skips a cut last line and raises on a bad line elsewhere."""
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(line({"type": "session"}) + b'{"type": "req')
    assert list(read_records(trace)) == [{"type": "session"}]
    trace.write_bytes(b"{oops\n" + line({"type": "session"}))
    with pytest.raises(ValueError, match=r"t\.jsonl:1: not a JSON object"):
        list(read_records(trace))


def request(test: str, *overrides: tuple[str, str]) -> dict[str, Any]:
    """A request record whose dependencies ran the given (original, resolved) overrides."""
    return {
        "type": "request",
        "test": test,
        "databases": [],
        "findings": [],
        "dependencies": [
            {"original": original, "resolved": resolved, "overridden": True}
            for original, resolved in overrides
        ],
    }


def unused(key: str, test: str | None = None) -> dict[str, Any]:
    """An OVERRIDE_UNUSED finding record for ``key`` -> ``conftest:fake``."""
    return {
        "type": "finding",
        "code": "OVERRIDE_UNUSED",
        "severity": "warning",
        "message": f"the override {key} -> conftest:fake was never consulted",
        "test": test,
        "phase": None,
        "key": key,
        "value": "conftest:fake",
    }


def outside(test: str | None, phase: str) -> dict[str, Any]:
    """A DB_OUTSIDE_REQUEST finding record."""
    return {
        "type": "finding",
        "code": "DB_OUTSIDE_REQUEST",
        "severity": "error",
        "message": f"1 statement ran on prod.db during the {phase} phase of {test}",
        "test": test,
        "phase": phase,
    }


def test_combine_tells_a_run_once() -> None:
    """Findings every process repeats are told once (an unused override whichever test
    registered it), one process's own repeats stay, and an override another process
    consulted is not unused."""
    entries = [
        ("gw0", request("t::a", ("app:get_user", "conftest:fake"))),
        ("gw0", outside(None, "startup")),
        ("gw0", outside("t::a", "setup")),
        ("gw0", outside("t::a", "setup")),
        ("gw0", unused("app:get_legacy", "t::a")),
        ("gw1", outside(None, "startup")),
        ("gw1", outside("t::b", "setup")),
        ("gw1", unused("app:get_user", "t::b")),  # gw0 consulted it
        ("gw1", unused("app:get_legacy", "t::b")),
        ("gw1", {"type": "summary", "internal_errors": 2, "notes": ["1 span not delivered"]}),
        ("gw1", {"type": "workers", "workers": [{"id": "gw1", "problems": ["cut"]}]}),
    ]
    run = combine(entries, internal_errors=1, notes=["own note"], problems=["missing"])
    assert run.run_findings == [
        outside(None, "startup"),
        outside("t::a", "setup"),
        outside("t::a", "setup"),
        unused("app:get_legacy", "t::a"),
        outside("t::b", "setup"),
    ]
    assert (run.requests, run.internal_errors, run.notes, run.problems) == (
        [entries[0][1]],
        3,
        ["own note", "1 span not delivered"],
        ["missing", "cut"],
    )


def test_combine_says_when_processes_judged_by_different_rules() -> None:
    """Shards run with different DEPSTRACE_TEST_DB are one run, with a warning."""
    run = combine(
        [
            (0, {"type": "session", "test_db_rule": "*_test"}),
            (1, {"type": "session", "test_db_rule": "*_test"}),
            (2, {"type": "session", "test_db_rule": "re:^ci_"}),
        ]
    )
    assert (run.rule, run.problems) == (
        "*_test",
        ["the processes of this run judged test databases by different rules: *_test; re:^ci_"],
    )


def test_in_test_order_follows_collection() -> None:
    """Session and engine records first, then what ran outside tests, then each test in
    collection order (one test's records in the order they were made), then the end."""
    records = [
        {"type": "request", "test": "t::b", "id": "r1", "worker": "gw1"},
        {"type": "finding", "test": "t::a", "phase": None, "worker": "gw0"},
        {"type": "engine", "id": "e1", "worker": "gw1"},
        {"type": "request", "test": "t::a", "id": "r1", "worker": "gw0"},
        {"type": "outside_request", "test": None, "worker": "gw0"},
        {"type": "request", "test": "t::b", "id": "r2", "worker": "gw1"},
        {"type": "request", "test": "t::unknown", "id": "r3", "worker": "gw1"},
        {"type": "session", "worker": "gw1"},
    ]
    ordered = in_test_order(records, {"t::a": 0, "t::b": 1})
    assert ordered == [records[i] for i in (2, 7, 4, 3, 0, 5, 6, 1)]


def test_read_worker_reports_a_missing_or_unfinished_file(tmp_path: Path) -> None:
    """A worker without a file, and one whose file lacks its summary, are named."""
    missing = read_worker(tmp_path / "trace-gw3.jsonl", "gw3")
    assert (missing.records, missing.entry()) == (
        [],
        {
            "id": "gw3",
            "file": "trace-gw3.jsonl",
            "records": 0,
            "finished": False,
            "problems": [
                "worker gw3 left no trace file (trace-gw3.jsonl): it died before depstrace "
                "started, or ran on another machine (merge its file with depstrace report)"
            ],
        },
    )
    path = tmp_path / "trace-gw0.jsonl"
    path.write_bytes(line({"type": "session"}) + line({"type": "request", "id": "r1"}))
    trace = read_worker(path, "gw0")
    assert trace.records == [{"type": "session", "worker": "gw0"}]
    assert trace.problems == [
        'trace-gw0.jsonl:2: request record: field "test" is missing',
        "worker gw0 did not finish its trace (it crashed or was killed): what it did after "
        "its last flush is missing",
    ]
