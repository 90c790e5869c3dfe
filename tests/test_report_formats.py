"""``depstrace report``: --fail-on gates, --test/--code/--db filters, --format and -o."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from report_traces import EXTERNAL, HOSTILE, HOSTILE_PATH, PURGE, STATS, WEATHER, make_trace

from depstrace.cli import main
from depstrace.gate import CODES

ADMIN = "tests/test_admin.py::test_report"
ITEMS = "tests/test_items.py::test_list"


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory, make_prod_dir: Callable[[], Path]) -> Path:
    """The trace of tests/report_traces.py (8 requests in 7 tests, 4 of them on the
    production database, one calling a host that is not allowed; a guard refusal)."""
    data = tmp_path_factory.mktemp("data")
    return make_trace(data / "trace.jsonl", data, make_prod_dir())


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No structlog lines, no wrapping: the words are what is tested."""
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "off")
    monkeypatch.setenv("COLUMNS", "1000")


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    """Run ``depstrace report ARGS``: exit status, stdout lines, stderr."""
    capsys.readouterr()
    status = main(["report", *args])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def test_fail_on_names_the_tests_and_exits_1(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--fail-on WRONG_DB,DI_BYPASS: exit 1, the account, then one line per failing test
    (then the notes of the run: what the guard refused)."""
    status, lines, err = report(capsys, str(trace), "--fail-on", "wrong_db, DI_BYPASS")
    assert (status, err) == (1, "")
    gate = next(i for i, line in enumerate(lines) if "fails this run" in line)
    assert lines[gate : gate + 6] == [
        "depstrace: --fail-on WRONG_DB,DI_BYPASS fails this run: WRONG_DB in 4 tests, "
        "DI_BYPASS in 2 tests:",
        f"  {STATS}  WRONG_DB x1, DI_BYPASS x1",
        f"  {ADMIN}  WRONG_DB x1",
        f"  {HOSTILE}  WRONG_DB x1, DI_BYPASS x1",
        f"  {PURGE}  WRONG_DB x1",
        "depstrace guard (DEPSTRACE_GUARD=writes): refused 1 statement on non-test databases:",
    ]


def test_fail_on_other_codes_passes(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Findings of codes the gate does not name do not fail it (without it, they would)."""
    assert report(capsys, str(trace))[0] == 1
    status, lines, _ = report(capsys, str(trace), "--fail-on", "DUPLICATE_SESSION,LOOP_MISMATCH")
    assert status == 0
    assert not [line for line in lines if "fails this run" in line]


def test_fail_on_a_damaged_trace_exits_2(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cut trace may hide a finding: a gate that found nothing says 2, not 0."""
    cut = tmp_path / "cut.jsonl"
    text = trace.read_text(encoding="utf-8")
    cut.write_text(text[: text.index('"type":"summary"') + 20], encoding="utf-8")
    assert report(capsys, str(cut), "--fail-on", "LOOP_MISMATCH")[0] == 2
    assert report(capsys, str(cut), "--fail-on", "WRONG_DB")[0] == 1


@pytest.mark.parametrize("option", ["--fail-on", "--code"])
def test_unknown_code_is_a_usage_error(
    trace: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    """An unknown code exits 2 and lists every valid code; nothing is printed on stdout."""
    status, lines, err = report(capsys, str(trace), option, "WRONG_DB,WRONGDB")
    assert (status, lines) == (2, [])
    assert err == (
        f"depstrace report: {option}='WRONG_DB,WRONGDB': unknown finding code WRONGDB. "
        f"Give one or more of, comma-separated: {', '.join(CODES)}.\n"
    )


@pytest.mark.parametrize(
    ("args", "status", "head"),
    [
        (
            ["--test", "tests/test_admin.py"],
            1,
            "depstrace: 1 of 1 requests reached a non-test database, in 1 test.",
        ),
        (["--test", "tests/test_items.py::test_list"], 0, "depstrace: 2 requests in 1 test, all"),
        (
            ["--test", "tests/test_s*", "--test", "tests/test_admin.py"],
            1,
            "depstrace: 2 of 2 requests reached a non-test database, in 2 tests.",
        ),
        (
            ["--code", "DI_BYPASS"],
            1,
            "depstrace: 2 of 2 requests reached a non-test database, in 2 tests.",
        ),
        (["--db", "test_app.db"], 0, "depstrace: 2 requests in 1 test, all on test databases."),
        (
            ["--db", "*prod*", "--test", "tests/"],
            1,
            "depstrace: 4 of 4 requests reached a non-test database, in 4 tests.",
        ),
        (["--test", "tests/test_nothing.py"], 3, "depstrace: no requests recorded."),
    ],
)
def test_filters_keep_matching_requests(
    trace: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    status: int,
    head: str,
) -> None:
    """--test (file, node id, glob), --code and --db narrow the run; the status is theirs."""
    got, lines, _ = report(capsys, str(trace), *args)
    assert got == status
    assert [line for line in lines if line.startswith(head)], lines


def test_db_filter_takes_engine_ids(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--db e2 (the production engine's id) keeps the same requests as a URL pattern."""
    by_id = report(capsys, str(trace), "--db", "e2", "--format", "json")
    by_url = report(capsys, str(trace), "--db", "*prod.db", "--format", "json")
    assert json.loads("\n".join(by_id[1]))["offending_requests"] == 4
    assert by_id == by_url


def test_json_format(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format json: the verdict, every finding with its test and request, the gate."""
    status, lines, _ = report(capsys, str(trace), "--format", "json", "--fail-on", "DI_BYPASS")
    document = json.loads("\n".join(lines))
    assert status == document["status"] == 1
    assert {k: document[k] for k in ("requests", "tests", "offending_requests")} == {
        "requests": 8,
        "tests": 7,
        "offending_requests": 4,
    }
    assert [(f["test"], f["method"], f["path"], f["code"]) for f in document["findings"]] == [
        (STATS, "GET", "/stats", "WRONG_DB"),
        (STATS, "GET", "/stats", "DI_BYPASS"),
        (ADMIN, "GET", "/admin", "WRONG_DB"),
        (HOSTILE, "GET", HOSTILE_PATH, "WRONG_DB"),
        (HOSTILE, "GET", HOSTILE_PATH, "DI_BYPASS"),
        (WEATHER, "GET", "/weather", "EXTERNAL_CALL"),
        (PURGE, "GET", "/purge", "WRONG_DB"),
    ]
    external = document["findings"][5]
    assert external["message"].startswith(
        "GET /weather called http://api.weather.invalid:8081 (GET 1) through httpx: "
    )
    assert external["hint"].endswith("DEPSTRACE_ALLOW_HOSTS=api.weather.invalid.")
    assert "s3cret" not in "\n".join(lines)
    assert EXTERNAL.endswith("s3cret")
    refused, allowed = document["guard"]["refused"], document["guard"]["allowed"]
    assert [(g["operation"], g["table"], g["test"], g["request"]) for g in refused] == [
        ("DELETE", "hits", PURGE, {"id": "r8", "method": "GET", "path": "/purge"})
    ]
    assert refused[0]["url"].endswith("prod.db")
    assert [f["code"] for f in refused[0]["findings"]] == ["WRONG_DB"]
    assert [(g["test"], g["allowed_by"]) for g in allowed] == [
        (STATS, "depstrace.allow_db('*prod.db')")
    ]
    assert document["fail_on"] == {
        "codes": ["DI_BYPASS"],
        "failed": True,
        "tests": {STATS: {"DI_BYPASS": 1}, HOSTILE: {"DI_BYPASS": 1}},
    }


def test_markdown_format_fits_a_job_summary(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format markdown -o FILE: a heading, the committed writes to production, the
    headline, the non-test databases reached, a table per code and per test, every
    value escaped (a test id holding markup or ``|`` cannot break out)."""
    summary = tmp_path / "summary.md"
    status, lines, err = report(
        capsys, str(trace), "--format", "markdown", "-o", str(summary), "--fail-on", "WRONG_DB"
    )
    assert (status, lines, err) == (1, [], "")
    text = summary.read_text(encoding="utf-8")
    escaped = (
        "tests/test_&lt;script&gt;alert(1)&lt;/script&gt;.py::test_x[&lt;/script&gt;"
        "&lt;img src=x onerror=alert(2)&gt;]"
    )
    prod = next(
        json.loads(line)["url"]
        for line in trace.read_text(encoding="utf-8").splitlines()
        if '"type":"guard"' in line.replace(" ", "")
    )
    assert text.splitlines() == [
        "### depstrace",
        "",
        "**depstrace: 1 request wrote to a non-test database and committed (CREATE 1, "
        f"INSERT 1 on {prod}).**",
        "",
        f"**depstrace: 4 of 8 requests reached a non-test database, in 4 tests. Trace: {trace}**",
        "",
        "**depstrace: --fail-on WRONG_DB fails this run: WRONG_DB in 4 tests:**",
        "",
        "| non-test database | requests | tests | outside requests |",
        "|---|---:|---:|---:|",
        f"| <code>{prod}</code> | 4 | 4 | 0 |",
        "",
        "| code | findings | tests | cause |",
        "|---|---:|---:|---|",
        "| <code>WRONG_DB</code> | 4 | 4 | a statement reached a database that does not match "
        "the test-database rule (<code>depstrace explain WRONG_DB</code>) |",
        "| <code>DI_BYPASS</code> | 2 | 2 | a session was opened outside Depends, where "
        "overrides cannot reach it (<code>depstrace explain DI_BYPASS</code>) |",
        "| <code>EXTERNAL_CALL</code> | 1 | 1 | a call left the machine for a host no fake, "
        "loopback address or DEPSTRACE_ALLOW_HOSTS pattern covers "
        "(<code>depstrace explain EXTERNAL_CALL</code>) |",
        "",
        "<details><summary>5 tests with findings</summary>",
        "",
        "| test | findings |",
        "|---|---|",
        f"| <code>{STATS}</code> | <code>WRONG_DB</code> x1, <code>DI_BYPASS</code> x1 |",
        f"| <code>{ADMIN}</code> | <code>WRONG_DB</code> x1 |",
        f"| <code>{escaped}</code> | <code>WRONG_DB</code> x1, <code>DI_BYPASS</code> x1 |",
        f"| <code>{WEATHER}</code> | <code>EXTERNAL_CALL</code> x1 |",
        f"| <code>{PURGE}</code> | <code>WRONG_DB</code> x1 |",
        "",
        "</details>",
        "",
        "**The guard (writes) refused 1 statement on non-test databases.**",
        "",
        "| refused | database | test | request | findings |",
        "|---|---|---|---|---|",
        f"| <code>DELETE hits</code> | <code>{prod}</code> | <code>{PURGE}</code> | "
        "<code>GET /purge</code> | <code>WRONG_DB</code> |",
        "",
        "- allowed by <code>depstrace.allow_db(&#x27;*prod.db&#x27;)</code>: 1 first use "
        "(per engine and test)",
        "",
    ]
    assert "<script>" not in text


@pytest.mark.parametrize(
    ("args", "refused", "allowed"),
    [
        (["--test", STATS], [], [STATS]),
        (["--test", PURGE], [PURGE], []),
        (["--code", "DI_BYPASS"], [], []),
        (["--db", "*prod.db"], [PURGE], [STATS]),
        (["--db", "test_app.db"], [], []),
    ],
)
def test_filters_keep_their_guard_records(
    trace: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    refused: list[str],
    allowed: list[str],
) -> None:
    """--test, --code and --db keep the guard records of their tests, codes, databases."""
    document = json.loads("\n".join(report(capsys, str(trace), *args, "--format", "json")[1]))
    assert [g["test"] for g in document["guard"]["refused"]] == refused
    assert [g["test"] for g in document["guard"]["allowed"]] == allowed


def test_markdown_without_guard_records_says_nothing_of_it(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run (here: a selection) the guard refused nothing in has no guard lines."""
    status, lines, _ = report(capsys, str(trace), "--test", WEATHER, "--format", "markdown")
    assert status == 1
    assert lines[-6:] == [
        "| test | findings |",
        "|---|---|",
        f"| <code>{WEATHER}</code> | <code>EXTERNAL_CALL</code> x1 |",
        "",
        "</details>",
        "",
    ]
    assert not [line for line in lines if "guard" in line]


def test_html_format_to_a_file(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format html -o FILE: one page, no external reference, the hostile test id only
    as escaped JSON; the exit status is the run's."""
    page = tmp_path / "report.html"
    assert report(capsys, str(trace), "--format", "html", "-o", str(page)) == (1, [], "")
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<script") == 3  # the two data blocks and the page's own script
    assert "<script>alert" not in text
    assert "<img" not in text
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in text
    assert not [word for word in ('src="', 'href="', "url(", "@import") if word in text]


def test_unwritable_output_is_a_usage_error(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o into a missing directory: exit 2 and why, on stderr."""
    status, lines, err = report(capsys, str(trace), "-o", str(tmp_path / "no" / "such.md"))
    assert (status, lines) == (2, [])
    assert (
        err
        == f"depstrace report: cannot write {tmp_path / 'no' / 'such.md'}: No such file or directory\n"
    )


def test_html_of_an_unreadable_file_is_a_whole_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No file could be read: exit 2, why on stderr, and a complete page that says so."""
    page = tmp_path / "report.html"
    missing = tmp_path / "missing.jsonl"
    status, lines, err = report(capsys, str(missing), "--format", "html", "-o", str(page))
    assert (status, lines) == (2, [])
    assert err == f"depstrace: {missing}: cannot read: No such file or directory\n"
    text = page.read_text(encoding="utf-8")
    assert text.endswith("</html>\n")
    assert f'"problems":["{missing}: cannot read: No such file or directory"]' in text


def test_a_malformed_guard_record_is_a_problem_not_a_crash(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A guard record whose ``request`` is not an object (a hand-edited file) is left out
    and named with its line; the rest of the report stands."""
    lines = trace.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if '"action":"refused"' in line)
    record = json.loads(lines[at]) | {"request": "r8"}
    lines[at] = json.dumps(record)
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, out, _ = report(capsys, str(damaged), "--format", "json")
    document = json.loads("\n".join(out))
    assert (status, document["damaged"]) == (1, True)  # WRONG_DB still found: 1, not 2
    assert document["problems"] == [
        f'{damaged}:{at + 1}: guard record: field "request" should be an object or null, not "r8"'
    ]
    assert document["guard"]["refused"] == []
    assert len(document["guard"]["allowed"]) == 1
