"""Pure functions that turn request records into the words users read.

Used by the pytest terminal summary, by the assertion message and by
``depstrace report``; they take plain dicts (docs/format.md), so a trace file
read back renders exactly like a live run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence, Sized
from typing import Any

from depstrace._names import chain_label, via_node
from depstrace.account import (
    Tally,
    fit,
    group_offenders,
    label_of,
    other_findings,
    render_groups,
    render_others,
    writes_lines,
)
from depstrace.findings import RECORD_CODES, request_findings

Record = dict[str, Any]


def reevaluate(request: Record, is_test: Callable[[str], bool]) -> Record:
    """A copy of ``request`` judged by another test-database rule."""
    databases = [db | {"is_test": is_test(db["url"])} for db in request["databases"]]
    judged = request | {"databases": databases}
    live = [f for f in request["findings"] if f["code"] not in RECORD_CODES]
    judged["findings"] = [f.to_dict() for f in request_findings(judged)] + live
    return judged


def offending(requests: Iterable[Record]) -> list[Record]:
    """The requests that ran at least one statement on a non-test database."""
    return [r for r in requests if any(not db["is_test"] for db in r["databases"])]


def describe_request(request: Record) -> list[str]:
    """Lines explaining one offending request: route, databases, chain, findings, fix."""
    status = request["status"] if request["status"] is not None else "no response"
    head = f"{request['method']} {request['path']} -> {status}"
    if request.get("route") and request["route"] != request["path"]:
        head += f"  (route {request['route']})"
    lines = [head]
    served = served_by(request)
    if request.get("endpoint"):
        served += f", endpoint {request['endpoint']}"
    lines.append(f"  served by  {served}")
    deps = {d["id"]: d for d in request["dependencies"]}
    for db in request["databases"]:
        if db["is_test"]:
            continue
        created = (
            f"created at {db['created_at']} during {db['created_phase']}"
            if db.get("created_at")
            else "created where depstrace could not see it"
        )
        lines.append(
            f"  database   {db['url']}  [engine {db['engine_id']}, {created}; "
            f"{db['statements']} statement{'s' if db['statements'] != 1 else ''}]"
        )
        tally = Tally()
        tally.add(db.get("operations"), db.get("commits"))
        if tally.writes:  # writes first: the one fact that turns a leak into damage
            lines.append(f"  writes     {tally.describe().partition('writes ')[2]}")
        lines.append(f"  via        {_chain(db, deps)}")
    for finding in request["findings"]:
        lines.append(f"  {finding['code']:<10} {finding['message']}")
    hints = dict.fromkeys(f["hint"] for f in request["findings"])
    lines.extend(f"  fix        {hint}" for hint in hints)
    return lines


def served_by(request: Record) -> str:
    """``app 'shop-admin' [app2] mounted in 'shop' [app1]``, and where overrides were read."""
    app = request["app"]
    provider = request.get("provider")
    served = f"app {app['title']!r} [{app['id']}]"
    outer = [a for a in request.get("apps", []) if a["id"] != app["id"]]
    if outer:
        served += " mounted in " + " in ".join(
            f"{a['title']!r} [{a['id']}]" for a in reversed(outer)
        )
    if provider and provider["id"] != app["id"]:
        served += f", overrides read from {provider['title']!r} [{provider['id']}]"
    return served


def chain_of(db: Record, request: Record) -> str:
    """How ``request`` got ``db``: the dependency chain with override status."""
    return _chain(db, {d["id"]: d for d in request["dependencies"]})


def _chain(db: Record, deps: dict[int, Record]) -> str:
    if db["via"] is None:
        return "no dependency: opened outside Depends"
    return chain_label(via_node(db, deps), deps)


# One line per finding code for the "why" section of the account.
CAUSES = {
    "WRONG_DB": "a statement reached a database that does not match the test-database rule",
    "DI_BYPASS": "a session was opened outside Depends, where overrides cannot reach it",
    "OVERRIDE_IDENTITY_MISMATCH": "an override is keyed on a lookalike, not the object "
    "the route uses",
    "OVERRIDE_NOT_VISIBLE": "an override sits on another app than the one serving the "
    "route (a mount parent, a second instance)",
    "OVERRIDE_LEAKED": "an override an earlier test registered and never removed served "
    "a later test",
    "OVERRIDE_UNUSED": "an override no request ever consulted",
    "ENGINE_FROM_ENV": "an engine was built from an exported environment variable",
    "DB_OUTSIDE_REQUEST": "a non-test database was used outside any request",
    "LOOP_MISMATCH": "a pooled async connection was reused on another event loop",
    "SESSION_NOT_COMMITTED": "writes were rolled back although a later request expected them",
    "DUPLICATE_SESSION": "one request opened several sessions from one dependency",
}


def summary_lines(
    requests: Sequence[Record],
    *,
    trace_file: str | None,
    internal_errors: int = 0,
    rule: str | None = None,
    run_findings: Sequence[Record] = (),
    verbosity: int = 0,
    width: int | None = None,
    warnings: Sequence[str] = (),
) -> list[str]:
    """The end-of-run account, fitted to ``width`` columns (None: unwrapped).

    Writes to a non-test database come first, then the headline.  By default the
    offenders are grouped by cause (:mod:`depstrace.account`); ``verbosity`` 1 or
    more (``pytest -v``, ``depstrace report --verbose``) gives one paragraph per
    request instead, and -1 or less (``pytest -q``) one line per group.  Every
    account that found something ends by saying why: each finding code that
    fired, with its count and docs page.  ``warnings`` are depstrace's own faults
    of this run, one line each (an unwritable trace file, the first internal
    error of each place); they end the account so an incomplete trace is never
    mistaken for a complete one.
    """
    bad = offending(requests)
    noted = [r for r in requests if r["findings"] and r not in bad]
    lines = writes_lines(requests, run_findings)
    lines.extend(headline(requests, trace_file=trace_file, rule=rule))
    if verbosity > 0:
        lines.extend(_per_request(bad, noted, run_findings))
    else:
        quiet = verbosity < 0
        lines.extend(render_groups(group_offenders(bad, chain_of), served_by, quiet=quiet))
        lines.extend(render_others(other_findings(requests, run_findings), quiet=quiet))
    if verbosity >= 0:
        lines.extend(_why([*bad, *noted], run_findings))
    if internal_errors:
        where = ":" if warnings else " (see the 'depstrace' logger)."
        lines.append(
            f"depstrace hit {internal_errors} internal error(s); the trace may be incomplete{where}"
        )
    lines.extend(warnings)
    return fit(lines, width)


def headline(
    requests: Sequence[Record], *, trace_file: str | None, rule: str | None = None
) -> list[str]:
    """The account's headline: how many requests reached a non-test database (or that
    all were on test databases), where the trace is, and the rule applied."""
    bad = offending(requests)
    tests = {r["test"] for r in requests}
    # A run without any test (a dev server under `depstrace run`) speaks of requests.
    testless = not any(tests)
    where = f" Trace: {trace_file}" if trace_file else ""
    if not bad:
        return [
            f"depstrace: {len(requests)} request{'s' if len(requests) != 1 else ''}"
            f"{_in_tests(tests, testless, ' in')}, all on test databases.{where}"
        ]
    bad_tests = {r["test"] for r in bad}
    lines = [
        f"depstrace: {len(bad)} of {len(requests)} requests reached a non-test database"
        f"{_in_tests(bad_tests, testless, ', in')}.{where}"
    ]
    if rule:
        lines.append(f"test database rule: {rule}")
    return lines


def _per_request(
    bad: Sequence[Record], noted: Sequence[Record], run_findings: Sequence[Record]
) -> list[str]:
    """Each offending request's paragraph under its test, then the other findings."""
    lines: list[str] = []
    bad_tests: dict[str, list[Record]] = {}
    for request in bad:
        bad_tests.setdefault(label_of(request), []).append(request)
    for test, test_requests in bad_tests.items():
        lines.append("")
        lines.append(test)
        for request in test_requests:
            lines.extend("  " + line for line in describe_request(request))
    if noted or run_findings:
        lines.append("")
        lines.append("other findings:")
        for request in noted:
            head = f"{request['method']} {request['path']} -> {request['status']}"
            lines.append(f"  {label_of(request)}: {head}")
            lines.extend(f"    {f['code']}  {f['message']}" for f in request["findings"])
            hints = dict.fromkeys(f["hint"] for f in request["findings"])
            lines.extend(f"    fix  {hint}" for hint in hints)
        for finding in run_findings:
            lines.append(f"  {label_of(finding)}:")
            lines.append(f"    {finding['code']}  {finding['message']}")
            lines.append(f"    fix  {finding['hint']}")
    return lines


def _in_tests(tests: Sized, testless: bool, lead: str) -> str:
    """`` in 3 tests`` for the headline; nothing when no test ran (a dev server)."""
    return "" if testless else f"{lead} {len(tests)} test{'s' if len(tests) != 1 else ''}"


def _why(requests: Sequence[Record], run_findings: Sequence[Record]) -> list[str]:
    counts: dict[str, int] = {}
    for request in requests:
        for finding in request["findings"]:
            counts[finding["code"]] = counts.get(finding["code"], 0) + 1
    for finding in run_findings:
        counts[finding["code"]] = counts.get(finding["code"], 0) + 1
    if not counts:
        return []
    lines = ["", "why:"]
    width = max(len(f"{code} x{n}") for code, n in counts.items())
    for code, n in counts.items():
        label = f"{code} x{n}"
        cause = CAUSES.get(code, "see the docs")
        lines.append(f"  {label:<{width}}  {cause} (depstrace explain {code})")
    return lines
