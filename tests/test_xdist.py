"""pytest-xdist: one run, one account, however many workers ran it (real workers, -n 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from shop_suite import HEADLINE, TESTS, account, write_suite

from depstrace._jsonl import read_records
from depstrace.cli import main


def facts(trace: Path) -> dict[str, Any]:
    """What a trace file says about the run: requests per test, finding codes per test."""
    records = list(read_records(trace))
    requests: dict[str, list[str]] = {}
    codes: dict[str | None, list[str]] = {}
    for record in records:
        if record["type"] == "request":
            requests.setdefault(record["test"], []).append(f"{record['method']} {record['path']}")
            codes.setdefault(record["test"], []).extend(f["code"] for f in record["findings"])
    return {
        "requests": requests,
        "request_codes": {test: sorted(found) for test, found in codes.items() if found},
        "types": sorted({r["type"] for r in records}),
    }


@pytest.mark.parametrize("dist", ["load", "loadscope", "loadfile"])
def test_two_workers_give_the_serial_account(
    dist: str,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """-n 2 prints the serial run's account word for word, in one merged trace file that
    depstrace report reads back to the same account."""
    write_suite(pytester, monkeypatch)
    trace = pytester.path / ".depstrace" / "trace.jsonl"
    serial = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    serial.assert_outcomes(passed=TESTS)
    serial_facts = facts(trace)
    # A worker file an earlier run (with more workers) left behind is not part of this run.
    stale = trace.with_name("trace-gw5.jsonl")
    stale.write_text(trace.read_text())

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist", dist)

    result.assert_outcomes(passed=TESTS)
    assert account(result.stdout.str()) == account(serial.stdout.str())
    assert account(result.stdout.str())[0] == f"{HEADLINE} Trace: {trace}"
    assert result.stdout.str().count("= depstrace =") == 1  # workers print nothing
    assert sorted(p.name for p in trace.parent.iterdir()) == ["trace-gw5.jsonl", "trace.jsonl"]
    merged = list(read_records(trace))
    assert facts(trace) == serial_facts | {"types": [*serial_facts["types"], "workers"]}
    workers = [r for r in merged if r["type"] == "workers"]
    assert [(w["id"], w["finished"], w["problems"]) for w in workers[0]["workers"]] == [
        ("gw0", True, []),
        ("gw1", True, []),
    ]
    ran_by = {r["worker"] for r in merged if r["type"] == "request"}
    assert ran_by <= {"gw0", "gw1"}, ran_by  # worker ids kept in the records
    capsys.readouterr()
    assert main(["report", str(trace)]) == 1
    assert capsys.readouterr().out.splitlines() == account(result.stdout.str())
    summary = merged[-1]
    assert summary == {
        "type": "summary",
        "schema": 1,
        "requests": 13,
        "wrong_db_requests": 2,
        "engines": summary["engines"],
        "internal_errors": 0,
    }


CRASH_TESTS = """
import json
import os
from pathlib import Path


def test_before(client):
    assert client.get("/items").json() == 1


def test_crash(client):
    assert client.get("/stats").json() == 1
    if Path("crashed-worker").exists():  # xdist may run it again on the replacement
        return
    # The worker dies in the middle of writing a record (as a SIGKILL during
    # a write would leave it), after its earlier tests' records were flushed.
    worker = os.environ["PYTEST_XDIST_WORKER"]
    with open(Path(".depstrace") / f"trace-{worker}.jsonl", "ab") as trace:
        trace.write(b'{"type":"request","schema":1,"id":"r9","test":"x')
    Path("crashed-worker").write_text(worker)
    os._exit(1)


def test_after(client):
    assert client.get("/items").json() == 1
"""


def test_crashed_worker_records_are_merged_and_the_cut_line_reported(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker that dies mid-write still has its flushed records in the one account;
    its cut line and its unfinished trace are reported, and the run is not called clean."""
    write_suite(pytester, monkeypatch)
    pytester.makepyfile(test_crash=CRASH_TESTS)

    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--dist", "load", "test_crash.py"
    )

    result.assert_outcomes(passed=2, failed=1)  # xdist fails the test the worker died in
    crashed = (pytester.path / "crashed-worker").read_text()
    lines = account(result.stdout.str())
    trace = pytester.path / ".depstrace" / "trace.jsonl"
    assert lines[:3] == [
        "depstrace: 2 requests in 2 tests, all on test databases, but 1 error finding "
        f"(DB_OUTSIDE_REQUEST) and an incomplete trace below. Trace: {trace}",
        f"trace-{crashed}.jsonl: last line cut after 48 bytes (a worker killed mid-write?); "
        f"{lines[1].rsplit('; ', 1)[1]}",
        f"worker {crashed} did not finish its trace (it crashed or was killed): what it did "
        "after its last flush is missing",
    ]
    assert lines[1].endswith(" complete records read")
    requests = [r for r in read_records(trace) if r["type"] == "request"]
    ran = {r["test"]: (r["path"], r["worker"]) for r in requests}
    assert sorted(ran) == ["test_crash.py::test_after", "test_crash.py::test_before"]
    if ran["test_crash.py::test_before"][1] == crashed:  # ran before the crash, flushed
        assert lines[1].endswith("; 6 complete records read")
    assert ran["test_crash.py::test_after"][1] != crashed
    workers = next(r for r in read_records(trace) if r["type"] == "workers")["workers"]
    assert [w["finished"] for w in workers if w["id"] == crashed] == [False]
    capsys.readouterr()  # read back later, the merged file tells the same damage
    assert main(["report", str(trace)]) == 1
    assert capsys.readouterr().out.splitlines() == lines


ASSERT_TESTS = """
import depstrace


def test_items(client):
    assert client.get("/items").json() == 1


def test_stats(client):
    assert client.get("/stats").json() == 1


def test_zz_session(client):
    depstrace.assert_all_resolved_to_test_db(scope="session")
"""

ASSERT_CONFTEST_HOOK = """

def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return
    import depstrace

    try:
        depstrace.assert_all_resolved_to_test_db(scope="session")
    except AssertionError as exc:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line("controller: " + str(exc).splitlines()[0])
"""


def test_session_assertion_says_which_worker_it_saw(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scope="session" inside a worker names the worker and its share of the tests; in
    the controller, after the merge, it sees every worker's requests."""
    write_suite(pytester, monkeypatch)
    conftest = pytester.path / "conftest.py"
    conftest.write_text(conftest.read_text() + ASSERT_CONFTEST_HOOK)
    pytester.makepyfile(test_assert=ASSERT_TESTS)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "1", "test_assert.py")

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E * AssertionError: 1 of 2 requests reached a database that is not a test "
            "database (default rule*):",
            "E * (seen by pytest-xdist worker gw0, which has run 3 of the run's 3 tests: the "
            "other workers' requests are not visible here; the account at the end of the run "
            "covers them all)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*controller: 1 of 2 requests reached a database that is not a test database "
            "(default rule*):"
        ]
    )


def test_serial_session_assertion_says_nothing_of_workers(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pytest-xdist the session assertion's message is the plain account."""
    write_suite(pytester, monkeypatch)
    pytester.makepyfile(test_assert=ASSERT_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_assert.py")
    result.assert_outcomes(passed=2, failed=1)
    assert "(seen by pytest-xdist worker" not in result.stdout.str()
    trace = pytester.path / ".depstrace" / "trace.jsonl"
    assert json.loads(trace.read_text().splitlines()[-1])["requests"] == 2
