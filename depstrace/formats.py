"""``depstrace report --format markdown|json``: the run for a CI job summary and for tools.

Markdown is sized for GitHub's job summary (``$GITHUB_STEP_SUMMARY``, 1 MiB per
step): the account's lines about writes to a non-test database (first, as in
the account), the headline, the non-test databases reached (a table), one
table row per finding code and at most
:data:`SHOWN_TESTS` tests.  Every value from the trace is HTML-escaped inside
``<code>`` (a test id may hold ``|``, a backtick or ``<script>``).  JSON holds
the verdict, the counts and every finding with its request.  Both list what guard
mode refused and what an allowance let through (the ``guard`` records).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from depstrace._redact import redact_text
from depstrace.account import writes_lines
from depstrace.findings import DB_OUTSIDE_REQUEST
from depstrace.gate import CODES, OUTSIDE_TESTS, gated
from depstrace.report import CAUSES, Verdict

Record = dict[str, Any]
SHOWN_TESTS = 50


def _code(text: object) -> str:
    """``text`` as a table-safe inline code element."""
    return f"<code>{html.escape(str(text)).replace('|', '&#124;')}</code>"


def _cell(text: object) -> str:
    return html.escape(str(text)).replace("|", "&#124;").replace("\n", " ")


def markdown_lines(
    headline: str,
    requests: Sequence[Record],
    run_findings: Sequence[Record],
    *,
    problems: Sequence[str] = (),
    gate: Sequence[str] = (),
    guard: Sequence[Record] = (),
) -> list[str]:
    """The run as GitHub-flavoured Markdown, one list item per line."""
    lines = ["### depstrace", ""]
    for said in writes_lines(requests, run_findings):
        lines += [f"**{_cell(said)}**", ""]
    lines += [f"**{_cell(headline)}**", ""]
    if gate:
        lines += [f"**{_cell(gate[0])}**", ""]
    lines += _database_lines(requests, run_findings)
    per_test = gated(requests, run_findings, CODES)
    counts: dict[str, int] = {}
    tests: dict[str, int] = {}
    for found in per_test.values():
        for code, n in found.items():
            counts[code] = counts.get(code, 0) + n
            tests[code] = tests.get(code, 0) + 1
    if counts:
        lines += ["| code | findings | tests | cause |", "|---|---:|---:|---|"]
        for code, n in counts.items():
            cause = CAUSES.get(code, "see the docs")
            lines.append(
                f"| {_code(code)} | {n} | {tests[code]} | {_cell(cause)} "
                f"({_code('depstrace explain ' + code)}) |"
            )
        lines += ["", f"<details><summary>{len(per_test)} tests with findings</summary>", ""]
        lines += ["| test | findings |", "|---|---|"]
        for test, found in list(per_test.items())[:SHOWN_TESTS]:
            said = ", ".join(f"{_code(c)} x{n}" for c, n in found.items())
            name = _cell(test) if test == OUTSIDE_TESTS else _code(test)
            lines.append(f"| {name} | {said} |")
        if len(per_test) > SHOWN_TESTS:
            lines.append(f"| +{len(per_test) - SHOWN_TESTS} more | |")
        lines += ["", "</details>", ""]
    lines += _guard_lines(guard)
    if problems:
        lines += ["The trace is incomplete:", ""]
        lines += [f"- {_cell(problem)}" for problem in problems]
        lines.append("")
    return lines


def _database_lines(requests: Sequence[Record], run_findings: Sequence[Record]) -> list[str]:
    """The non-test databases reached: requests and tests per redacted URL, and the
    uses outside requests (fixtures, import-time code)."""
    reached: dict[str, tuple[list[str], set[str], list[Record]]] = {}
    for request in requests:
        for db in request["databases"]:
            if not db["is_test"]:
                uses = reached.setdefault(redact_text(str(db["url"])), ([], set(), []))
                uses[0].append(request["id"])
                uses[1].add(str(request.get("test")))
    for finding in run_findings:
        if finding.get("code") == DB_OUTSIDE_REQUEST and finding.get("url"):
            reached.setdefault(redact_text(str(finding["url"])), ([], set(), []))[2].append(finding)
    if not reached:
        return []
    lines = ["| non-test database | requests | tests | outside requests |", "|---|---:|---:|---:|"]
    for url, (ids, tests, outside) in reached.items():
        lines.append(f"| {_code(url)} | {len(set(ids))} | {len(tests)} | {len(outside)} |")
    return [*lines, ""]


def _guard_lines(guard: Sequence[Record]) -> list[str]:
    """The guard's refusals (a table) and allowed uses (a count per allowance)."""
    refused = [g for g in guard if g.get("action") == "refused"]
    allowed: dict[str, int] = {}
    for event in guard:
        if event.get("action") == "allowed":
            said = str(event.get("allowed_by"))
            allowed[said] = allowed.get(said, 0) + 1
    if not (refused or allowed):
        return []
    mode = guard[0].get("mode")
    lines = [f"**The guard ({_cell(mode)}) refused {_count(len(refused), 'statement')} "
             "on non-test databases.**", ""]  # fmt: skip
    if refused:
        lines += ["| refused | database | test | request | findings |", "|---|---|---|---|---|"]
        for event in refused[:SHOWN_TESTS]:
            what = " ".join(str(w) for w in (event.get("operation"), event.get("table")) if w)
            request, fixture = event.get("request"), event.get("fixture")
            where = "outside any request"
            if request:
                where = _code(f"{request.get('method')} {request.get('path')}")
            elif fixture:
                where = f"fixture {_code(fixture.get('name'))}"
            codes = ", ".join(_code(f["code"]) for f in event.get("findings") or ())
            test = event.get("test")
            lines.append(
                f"| {_code(what)} | {_code(event.get('url'))} | "
                f"{_code(test) if test else 'outside any test'} | {where} | {codes} |"
            )
        if len(refused) > SHOWN_TESTS:
            lines.append(f"| +{len(refused) - SHOWN_TESTS} more | | | | |")
        lines.append("")
    for said, n in allowed.items():
        lines.append(f"- allowed by {_code(said)}: {_count(n, 'first use')} (per engine and test)")
    if allowed:
        lines.append("")
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _guard_event(record: Record) -> Record:
    return {k: v for k, v in record.items() if k not in ("type", "schema")}


def json_document(
    judged: Verdict,
    headline: str,
    requests: Sequence[Record],
    run_findings: Sequence[Record],
    *,
    status: int,
    problems: Sequence[str] = (),
    rule: str | None = None,
    internal_errors: int = 0,
    fail_on: Sequence[str] = (),
    guard: Sequence[Record] = (),
) -> Record:
    """The run as one JSON object (docs/report.md lists its fields)."""
    findings = [
        {
            "test": request["test"],
            "request": request.get("id"),
            "worker": request.get("worker"),
            "method": request.get("method"),
            "path": request.get("path"),
            "code": finding["code"],
            "severity": finding.get("severity"),
            "message": finding["message"],
            "hint": finding.get("hint"),
        }
        for request in requests
        for finding in request["findings"]
    ]
    findings += [
        {
            "test": finding.get("test"),
            "request": None,
            "worker": finding.get("worker"),
            "method": None,
            "path": None,
            "code": finding["code"],
            "severity": finding.get("severity"),
            "message": finding["message"],
            "hint": finding.get("hint"),
        }
        for finding in run_findings
    ]
    gate = gated(requests, run_findings, fail_on) if fail_on else {}
    return {
        "status": status,
        "headline": headline,
        "requests": judged.requests,
        "tests": judged.tests,
        "with_database": judged.with_database,
        "offending_requests": judged.offending,
        "offending_tests": judged.offending_tests,
        "errors": judged.errors,
        "warnings": judged.warnings,
        "damaged": judged.damaged,
        "problems": list(problems),
        "test_db_rule": rule,
        "internal_errors": internal_errors,
        "tests_with_findings": gated(requests, run_findings, CODES),
        "findings": findings,
        "guard": {
            "refused": [_guard_event(g) for g in guard if g.get("action") == "refused"],
            "allowed": [_guard_event(g) for g in guard if g.get("action") == "allowed"],
        },
        "fail_on": (
            {"codes": list(fail_on), "failed": bool(gate), "tests": gate} if fail_on else None
        ),
    }
