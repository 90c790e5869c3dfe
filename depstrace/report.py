"""Pure functions that turn request records into the words users read.

Used by the pytest terminal summary, by the assertion message and by
``depstrace report``; they take plain dicts (docs/format.md), so a trace file
read back renders exactly like a live run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from depstrace._names import chain_label, via_node
from depstrace.account import (
    Tally,
    fit,
    group_offenders,
    label_of,
    other_findings,
    plural,
    render_groups,
    render_others,
    writes_lines,
)
from depstrace.calls import STORE_SYSTEMS
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
        tally.add(db.get("operations"), db.get("commits"), db.get("refused"))
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
    "EXTERNAL_CALL": "a call left the machine for a host no fake, loopback address or "
    "DEPSTRACE_ALLOW_HOSTS pattern covers",
}


# Exit statuses of ``depstrace report`` (README, ``depstrace report --help``).
EXIT_CLEAN = 0  # requests reached databases, all test databases, no error finding, intact
EXIT_FINDINGS = 1  # a request reached a non-test database, or an error-severity finding
EXIT_UNREADABLE = 2  # usage, an unreadable file, or a damaged trace (cut, malformed, unfinished)
EXIT_NO_DATA = 3  # no requests recorded, or none reached a database depstrace can observe


@dataclass(frozen=True)
class Verdict:
    """What a run amounts to: the facts the headline states and the exit status rests on."""

    requests: int
    tests: int
    offending: int  # requests that reached a non-test database
    offending_tests: int
    with_database: int  # requests that reached any database depstrace observes
    errors: dict[str, int]  # error-severity finding codes (besides offenders'), with counts
    warnings: dict[str, int]
    damaged: bool  # a trace file was cut, malformed, unreadable or never finished

    @property
    def status(self) -> int:
        """``EXIT_FINDINGS`` before ``EXIT_UNREADABLE`` before ``EXIT_NO_DATA``; else clean."""
        if self.offending or self.errors:
            return EXIT_FINDINGS
        if self.damaged:
            return EXIT_UNREADABLE
        if not self.with_database:
            return EXIT_NO_DATA
        return EXIT_CLEAN


def verdict(
    requests: Sequence[Record], run_findings: Sequence[Record] = (), *, damaged: bool = False
) -> Verdict:
    """Judge a run from its request records and its findings tied to no request."""
    bad = offending(requests)
    offenders = {id(r) for r in bad}
    errors: dict[str, int] = {}
    warnings: dict[str, int] = {}
    found = [(id(r) in offenders, f) for r in requests for f in r["findings"]]
    for offender, finding in [*found, *((False, f) for f in run_findings)]:
        if finding.get("severity") != "error":
            warnings[finding["code"]] = warnings.get(finding["code"], 0) + 1
        elif not offender:  # an offender's own errors are in the headline already
            errors[finding["code"]] = errors.get(finding["code"], 0) + 1
    return Verdict(
        requests=len(requests),
        tests=len({r["test"] for r in requests if r["test"] is not None}),
        offending=len(bad),
        offending_tests=len({r["test"] for r in bad if r["test"] is not None}),
        with_database=sum(1 for r in requests if r["databases"] or _store_calls(r)),
        errors=errors,
        warnings=warnings,
        damaged=damaged,
    )


def _store_calls(request: Record) -> bool:
    """Whether ``request`` reached an in-process fake store (fakeredis, mongomock, moto):
    those count as test databases.  A real Redis or S3 is not judged by the
    test-database rule (it has no database name to judge), so it does not."""
    return any(
        c["system"] in STORE_SYSTEMS and c.get("fake") is not None
        for c in request.get("calls") or ()
    )


def headline(judged: Verdict, trace_file: str | None = None) -> str:
    """The first line of the account; it calls a run clean only when it is.

    Clean means: requests reached databases, all of them test databases, no
    error-severity finding, and every trace file read whole.
    """
    where = f" Trace: {trace_file}" if trace_file else ""
    if judged.offending:
        tests = f", in {plural(judged.offending_tests, 'test')}" if judged.offending_tests else ""
        return (
            f"depstrace: {judged.offending} of {judged.requests} requests reached a non-test "
            f"database{tests}.{where}"
        )
    if not judged.requests:
        said = "depstrace: no requests recorded"
    else:
        # Requests outside tests (a dev server under depstrace run) are in no test.
        tests = f" in {plural(judged.tests, 'test')}" if judged.tests else ""
        said = f"depstrace: {plural(judged.requests, 'request')}{tests}"
        if judged.with_database:
            said += ", all on test databases"
        else:
            said += ", none reached a database depstrace can observe"
    buts = []
    if judged.errors:
        count = sum(judged.errors.values())
        buts.append(f"{plural(count, 'error finding')} ({', '.join(judged.errors)})")
    if judged.damaged:
        buts.append("an incomplete trace")
    if buts:
        return f"{said}, but {' and '.join(buts)} below.{where}"
    if judged.warnings:
        count = sum(judged.warnings.values())
        said += f"; {plural(count, 'warning')} ({', '.join(judged.warnings)}) below"
    return f"{said}.{where}"


def summary_lines(
    requests: Sequence[Record],
    *,
    trace_file: str | None,
    internal_errors: int = 0,
    rule: str | None = None,
    run_findings: Sequence[Record] = (),
    problems: Sequence[str] = (),
    verbosity: int = 0,
    width: int | None = None,
    warnings: Sequence[str] = (),
) -> list[str]:
    """The end-of-run account, fitted to ``width`` columns (None: unwrapped).

    Writes to a non-test database come first, then the headline (:func:`headline`)
    and ``problems``, what was wrong with the trace files.  By default the
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
    offenders = {id(r) for r in bad}  # by identity: comparing dicts made this quadratic
    noted = [r for r in requests if r["findings"] and id(r) not in offenders]
    lines = writes_lines(requests, run_findings)
    lines.append(headline(verdict(requests, run_findings, damaged=bool(problems)), trace_file))
    lines.extend(problems)
    if bad and rule:
        lines.append(f"test database rule: {rule}")
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
