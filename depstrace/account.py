"""The end-of-run account grouped by cause: one block per database, dependency chain
and set of findings, writes first, every line fitted to the terminal width.

The per-request paragraphs (``pytest -v``, ``depstrace report --verbose``) live in
:mod:`depstrace.report`; this module says each fact once: a group names how many
requests and tests it holds, the first few of them, what they read, wrote and
committed, each distinct finding message (the request's method and path
generalised away) and each fix.  Everything is computed from the plain dicts of
docs/format.md, so a trace file read back renders exactly like a live run.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from depstrace._records import WRITES
from depstrace.findings import describe_fixture

Record = dict[str, Any]

# Statements that change data or schema.  ``CREATE DATABASE`` and the like arrive
# as two-word operations (depstrace._sql.ADMIN_OPERATIONS): server
# administration, so they are not in this set.
WRITE_OPERATIONS = WRITES | frozenset({"CREATE", "ALTER", "DROP", "TRUNCATE"})
SHOWN = 3  # how many tests, routes or endpoints a group names before "+N more"
MIN_WIDTH = 40

_WHERE = "\x01"  # stands for the request's "METHOD /path" in a generalised message
_COUNT = "\x02"  # stands for "N statement(s)"
_TEST = "\x03"  # stands for the test id in a finding tied to no request
_STATEMENTS = re.compile(r"\b\d+ statements?\b")


# -- reads, writes, commits ------------------------------------------------------------


@dataclass
class Tally:
    """Statements by operation and commits, summed over requests or fixtures."""

    operations: dict[str, int] = field(default_factory=dict)
    commits: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # by the guard: never ran

    def add(
        self,
        operations: dict[str, int] | None,
        commits: int | None,
        refused: dict[str, int] | None = None,
    ) -> None:
        """Add one database use (``databases[]`` entry or outside-request record)."""
        for verb, count in (operations or {}).items():
            self.operations[verb] = self.operations.get(verb, 0) + count
        for verb, count in (refused or {}).items():
            self.refused[verb] = self.refused.get(verb, 0) + count
        self.commits += commits or 0

    @property
    def writes(self) -> dict[str, int]:
        """The write operations only, in the order first seen."""
        return {v: n for v, n in self.operations.items() if v in WRITE_OPERATIONS}

    def describe(self) -> str:
        """``reads 2 (SELECT 2), writes 1 (INSERT 1), 1 commit``."""
        reads = {v: n for v, n in self.operations.items() if v not in WRITE_OPERATIONS}
        parts = []
        if reads:
            parts.append(f"reads {sum(reads.values())} ({verbs(reads)})")
        writes = self.writes
        parts.append(f"writes {sum(writes.values())} ({verbs(writes)})" if writes else "no writes")
        if writes or self.commits:
            parts.append(plural(self.commits, "commit") if self.commits else "no commit")
        if self.refused:
            parts.append(
                f"refused by the guard {sum(self.refused.values())} ({verbs(self.refused)})"
            )
        return ", ".join(parts)


def verbs(operations: dict[str, int]) -> str:
    """``INSERT 1, UPDATE 1``."""
    return ", ".join(f"{verb} {count}" for verb, count in operations.items())


def plural(count: int, noun: str) -> str:
    """``1 request``, ``2 requests``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def writes_lines(requests: Sequence[Record], run_findings: Sequence[Record]) -> list[str]:
    """The account's first lines when true: who wrote to a non-test database, and
    whether it was committed, with the write operations per database."""
    lines = []
    for committed in (True, False):
        by_url: dict[str, Tally] = {}
        writers = 0
        for request in requests:
            wrote = False
            for db in request["databases"]:
                tally = Tally()
                tally.add(db.get("operations"), db.get("commits"))
                if db["is_test"] or not tally.writes or bool(tally.commits) != committed:
                    continue
                by_url.setdefault(db["url"], Tally()).add(tally.writes, tally.commits)
                wrote = True
            writers += wrote
        if writers:
            lines.append(
                f"depstrace: {plural(writers, 'request')} wrote to a non-test database "
                f"{_committed(committed)} ({_per_database(by_url)})."
            )
    for committed in (True, False):
        by_url, sources = {}, []
        for finding in run_findings:
            tally = Tally()
            tally.add(finding.get("operations"), finding.get("commits"))
            if not tally.writes or bool(tally.commits) != committed or "url" not in finding:
                continue
            by_url.setdefault(finding["url"], Tally()).add(tally.writes, tally.commits)
            sources.append(_outside_source(finding))
        if sources:
            named = _sources(list(dict.fromkeys(sources)))
            lines.append(
                f"depstrace: {named} wrote to a non-test database outside any request "
                f"{_committed(committed)} ({_per_database(by_url)})."
            )
    return lines


def _committed(committed: bool) -> str:
    return "and committed" if committed else "without a commit"


def _per_database(by_url: dict[str, Tally]) -> str:
    return "; ".join(f"{verbs(t.operations)} on {url}" for url, t in by_url.items())


def _sources(sources: list[str]) -> str:
    """``fixtures 'seed', 'counted'`` or ``the setup phase of t1, +2 more``."""
    fixtures = [s.removeprefix("fixture ") for s in sources if s.startswith("fixture ")]
    others = [s for s in sources if not s.startswith("fixture ")]
    named = [f"fixture{'s' if len(fixtures) > 1 else ''} {_first(fixtures)}"] if fixtures else []
    return ", ".join(named + ([_first(others)] if others else []))


def _outside_source(finding: Record) -> str:
    fixture = finding.get("fixture")
    if fixture is not None:
        return f"fixture {fixture['name']!r}"
    if finding.get("test"):
        return f"the {finding.get('phase')} phase of {finding['test']}"
    return f"code running at {finding.get('phase') or 'an unknown'} time"


# -- who: tests, fixtures, routes ------------------------------------------------------


_NO_TEST = "(outside any test)"


def label_of(record: Record) -> str:
    """The test a record belongs to, or the fixture when a session-, package-,
    module- or class-scoped fixture ran it (whichever test needed it first is chance)."""
    fixture = broad_fixture(record)
    if fixture is not None:
        return describe_fixture(fixture)
    return record.get("test") or _NO_TEST


def broad_fixture(record: Record) -> dict[str, Any] | None:
    """The record's fixture when it outlives a test (session, package, module, class)."""
    fixture: dict[str, Any] | None = record.get("fixture")
    return fixture if fixture is not None and fixture.get("scope") != "function" else None


def _tests(labels: Iterable[str]) -> list[str]:
    """Distinct labels in order; parametrized cases of one test become ``test[*] xN``."""
    cases: dict[str, list[str]] = {}
    for label in dict.fromkeys(labels):
        base = label.partition("[")[0] if label.endswith("]") and "::" in label else label
        cases.setdefault(base, []).append(label)
    return [ids[0] if len(ids) == 1 else f"{base}[*] x{len(ids)}" for base, ids in cases.items()]


def _first(items: Sequence[str], shown: int = SHOWN) -> str:
    """``a, b, c, +4 more``."""
    more = f", +{len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _route(request: Record, count: int) -> str:
    status = request["status"] if request["status"] is not None else "no response"
    if count == 1:
        return f"{request['method']} {request['path']} -> {status}"
    return f"{request['method']} {request.get('route') or request['path']} -> {status} x{count}"


def _routes(requests: Sequence[Record]) -> list[str]:
    counts: dict[tuple[str, str, Any], list[Record]] = {}
    for r in requests:
        counts.setdefault((r["method"], r.get("route") or r["path"], r["status"]), []).append(r)
    return [_route(same[0], len(same)) for same in counts.values()]


def _where(request: Record) -> str:
    return f"{request['method']} {request['path']}"


# -- generalising messages -------------------------------------------------------------


def _replace(text: str, concrete: str | None, placeholder: str) -> str:
    if not concrete:
        return text
    # Not inside a longer path: "GET /items" must not match in "GET /items/3".
    return re.sub(re.escape(concrete) + r"(?![\w/.\-])", placeholder, text)


def _words(text: str) -> str:
    return (
        text.replace(_WHERE, "each request")
        .replace(_COUNT, "statements")
        .replace(_TEST, "each test")
    )


@dataclass
class Said:
    """One distinct message: its words, the same with the request and test generalised
    (to find what variants share), and who said it."""

    text: str
    general: str
    labels: list[str]


def distinct_messages(members: Sequence[tuple[str, str | None, str | None, str]]) -> list[Said]:
    """Messages said once each: ``members`` are (message, where, test, label) of the
    same finding in several requests or tests.

    Identical messages merge as they are; messages that differ only in the
    request (method and path), the test or the statement count merge with those
    parts generalised ("each request ran statements on ..."), but only when that
    merges something.  What still differs (say the site a session was opened at)
    stays, one :class:`Said` per variant, with the labels of its members.
    """

    def general(message: str, where: str | None, test: str | None) -> str:
        return _replace(_replace(message, where, _WHERE), test, _TEST)

    levels: list[Callable[[str, str | None, str | None], str]] = [
        lambda m, w, t: m,
        general,
        lambda m, w, t: _STATEMENTS.sub(_COUNT, general(m, w, t)),
    ]
    tried = []
    for level in levels:
        variants: dict[str, list[tuple[str, str, str]]] = {}
        for message, where, test, label in members:
            variants.setdefault(level(message, where, test), []).append(
                (message, general(message, where, test), label)
            )
        tried.append(variants)
    fewest = min(len(v) for v in tried)
    chosen = next(v for v in tried if len(v) == fewest)
    said = []
    for text, members_said in chosen.items():
        concrete = {message for message, _, _ in members_said}
        said.append(
            Said(
                text=concrete.pop() if len(concrete) == 1 else _words(text),
                general=_words(members_said[0][1]),
                labels=list(dict.fromkeys(label for _, _, label in members_said)),
            )
        )
    return said


def message_lines(code: str, said: Sequence[Said], indent: str) -> list[str]:
    """``CODE  message`` once; variants share their common leading sentences, then list
    the rest, each with the routes or tests that said it."""
    prefix = f"{indent}{code}  " if code else indent
    if len(said) == 1:
        return [prefix + said[0].text]
    sentences = [re.split(r"(?<=[.:;]) ", s.general) for s in said]
    common = 0
    while all(len(s) > common + 1 for s in sentences) and len({s[common] for s in sentences}) == 1:
        common += 1
    if common == 0:
        return [f"{prefix}{s.text} [{_first(s.labels)}]" for s in said]
    lines = [prefix + " ".join(sentences[0][:common])]
    for parts, variant in zip(sentences, said, strict=True):
        lines.append(f"{indent}  - {' '.join(parts[common:])} [{_first(variant.labels)}]")
    return lines


# -- groups of offending requests --------------------------------------------------------


@dataclass
class Group:
    """Requests that reached one non-test database through one chain with one set of
    findings."""

    db: Record
    chain: str
    codes: tuple[str, ...]
    requests: list[Record] = field(default_factory=list)
    findings: list[tuple[Record, Record]] = field(default_factory=list)  # (request, finding)
    tally: Tally = field(default_factory=Tally)

    @property
    def tests(self) -> list[str]:
        """Distinct test (or broad-scoped fixture) labels, in order of first request."""
        return list(dict.fromkeys(label_of(r) for r in self.requests))


def group_offenders(
    requests: Sequence[Record], chain: Callable[[Record, Record], str]
) -> list[Group]:
    """One :class:`Group` per (database, dependency chain, finding codes); a request on
    two non-test databases is in two groups.  ``chain(db, request)`` words the chain.

    A finding goes with the database its ``engine_id`` names, else with the
    request's first non-test database.  Groups with committed writes come first.
    """
    groups: dict[tuple[str, str, tuple[str, ...]], Group] = {}
    for request in requests:
        wrong = [db for db in request["databases"] if not db["is_test"]]
        if not wrong:
            continue
        engines = {db["engine_id"] for db in wrong}
        for db in wrong:
            mine = [
                f
                for f in request["findings"]
                if f.get("engine_id") == db["engine_id"]
                or (db is wrong[0] and f.get("engine_id") not in engines)
            ]
            codes = tuple(dict.fromkeys(f["code"] for f in mine))
            route = chain(db, request)
            group = groups.setdefault(
                (db["engine_id"], route, codes), Group(db=db, chain=route, codes=codes)
            )
            group.requests.append(request)
            group.findings.extend((request, f) for f in mine)
            group.tally.add(db.get("operations"), db.get("commits"), db.get("refused"))
    return sorted(groups.values(), key=_writes_first)


def _writes_first(group: Group) -> tuple[bool, bool]:
    writes = bool(group.tally.writes)
    return (not (writes and group.tally.commits), not writes)


def _database_head(db: Record) -> str:
    created = (
        f"created at {db['created_at']} during {db['created_phase']}"
        if db.get("created_at")
        else "created where depstrace could not see it"
    )
    return f"{db['url']}  [engine {db['engine_id']}, {created}]"


def render_groups(
    groups: Sequence[Group], served: Callable[[Record], str], quiet: bool = False
) -> list[str]:
    """The account's body: per database a head line, then each group's block (or, when
    ``quiet``, one line per group)."""
    lines: list[str] = []
    if quiet:
        for group in groups:
            tests = len(group.tests)
            lines.append(
                f"{group.db['url']} [engine {group.db['engine_id']}] via {group.chain}: "
                f"{plural(len(group.requests), 'request')} in {plural(tests, 'test')}; "
                f"{group.tally.describe()}; {' '.join(group.codes)}"
            )
        return lines
    by_engine: dict[str, list[Group]] = {}
    for group in groups:
        by_engine.setdefault(group.db["engine_id"], []).append(group)
    for engine_groups in by_engine.values():
        lines.append("")
        lines.append(_database_head(engine_groups[0].db))
        for group in engine_groups:
            lines.extend(_group_block(group, served))
    return lines


def _group_block(group: Group, served: Callable[[Record], str]) -> list[str]:
    requests = group.requests
    lines = [f"  via {group.chain}"]
    lines.append(
        f"    {plural(len(requests), 'request')} in {plural(len(group.tests), 'test')}: "
        f"{group.tally.describe()}"
    )
    if len(requests) <= SHOWN:
        for request in requests:
            route = _route(request, 1)
            if request.get("route") and request["route"] != request["path"]:
                route += f" (route {request['route']})"
            lines.append(f"    {route} in {label_of(request)}")
    else:
        lines.append(f"    routes: {_first(_routes(requests))}")
        lines.append(f"    tests: {_first(_tests(label_of(r) for r in requests))}")
    apps = list(dict.fromkeys(served(r) for r in requests))
    endpoints = list(dict.fromkeys(r["endpoint"] for r in requests if r.get("endpoint")))
    serving = f"    served by {'; '.join(apps)}"
    if endpoints:
        serving += f", endpoint{'s' if len(endpoints) > 1 else ''} {_first(endpoints)}"
    lines.append(serving)
    lines.extend(_said(group.findings, "    "))
    return lines


def _said(findings: Sequence[tuple[Record, Record]], indent: str) -> list[str]:
    """Each finding code's message(s) once, then each fix once."""
    # Each member once (a group of a long run repeats the same few): equal members
    # change nothing distinct_messages says (its variants, their order, their labels).
    messages: dict[str, dict[tuple[str, str | None, str | None, str], None]] = {}
    hints: dict[str, dict[tuple[str, str | None, str | None, str], None]] = {}
    for request, finding in findings:
        where = _where(request)
        messages.setdefault(finding["code"], {})[(finding["message"], where, None, where)] = None
        hints.setdefault(finding["code"], {})[(finding["hint"], where, None, where)] = None
    lines = []
    for code, members in messages.items():
        lines.extend(message_lines(code, distinct_messages(list(members)), indent))
    fixes = (said.text for members in hints.values() for said in distinct_messages(list(members)))
    lines.extend(f"{indent}fix  {text}" for text in dict.fromkeys(fixes))
    return lines


# -- findings outside the database groups ----------------------------------------------


@dataclass
class Other:
    """One finding tied to no database group: a request's finding on a test database,
    or a run finding (``DB_OUTSIDE_REQUEST``, ``OVERRIDE_UNUSED`` ...)."""

    finding: Record
    where: str | None  # "METHOD /path" of its request
    test: str | None
    label: str  # route or test, for listing
    tests: str  # test label for counting


def other_findings(requests: Sequence[Record], run_findings: Sequence[Record]) -> list[Other]:
    """The findings :func:`group_offenders` does not place, in order."""
    others = []
    for request in requests:
        if any(not db["is_test"] for db in request["databases"]):
            continue
        for finding in request["findings"]:
            where, test = _where(request), label_of(request)
            others.append(Other(finding, where, request.get("test"), f"{where} in {test}", test))
    for finding in run_findings:
        label = label_of(finding)
        others.append(Other(finding, None, finding.get("test"), label, label))
    return others


def render_others(others: Sequence[Other], quiet: bool = False) -> list[str]:
    """Other findings grouped by (code, object): the fixture when one ran it, else the
    engine and the message with its request, test and counts generalised."""
    groups: dict[tuple[Any, ...], list[Other]] = {}
    generals: dict[tuple[str, str | None, str | None], str] = {}  # a long run repeats them
    for other in others:
        finding = other.finding
        fixture = broad_fixture(finding)
        if fixture is not None:
            obj: tuple[Any, ...] = (fixture["name"], fixture.get("site"), finding.get("phase"))
        else:
            said = (finding["message"], other.where, other.test)
            if said not in generals:
                generals[said] = distinct_messages([(*said, "")])[0].general
            obj = (finding.get("engine_id"), finding.get("app"), generals[said])
        groups.setdefault((finding["code"], *obj), []).append(other)
    if not groups:
        return []
    lines = ["", "other findings:"]
    for members in groups.values():
        first = members[0].finding
        tally = Tally()
        for member in members:
            finding = member.finding
            tally.add(finding.get("operations"), finding.get("commits"), finding.get("refused"))
        # Statements while no test ran (conftest import, collection) are in no test.
        tests = list(dict.fromkeys(m.tests for m in members if m.tests != _NO_TEST))
        counted = [f"in {plural(len(tests), 'test')}"] if tests else []
        if any(m.tests == _NO_TEST for m in members):
            counted.append("outside any test")
        noun = "request" if members[0].where else "time"
        head = f"  {first['code']}  {plural(len(members), noun)} {' and '.join(counted)}"
        fixture = broad_fixture(first)
        if fixture is not None:
            stage = "teardown" if first.get("phase") == "teardown" else "setup"
            head = f"  {first['code']}  {describe_fixture(fixture)} {stage}"
        if tally.operations or tally.refused:
            head += f": {tally.describe()}"
        lines.append(head)
        if quiet:
            continue
        if fixture is None and (tests or members[0].where):
            labels = list(dict.fromkeys(m.label for m in members))
            listed = labels if members[0].where else _tests(labels)
            lines.append(f"    in {_first(listed)}")
        # Each member once: equal ones change nothing distinct_messages says (see _said).
        texts = distinct_messages(
            list(dict.fromkeys((m.finding["message"], m.where, m.test, m.label) for m in members))
        )
        lines.extend(message_lines("", texts, "    "))
        hints = distinct_messages(
            list(dict.fromkeys((m.finding["hint"], m.where, m.test, m.label) for m in members))
        )
        lines.extend(f"    fix  {text}" for text in dict.fromkeys(h.text for h in hints))
    return lines


# -- fitting the terminal ---------------------------------------------------------------


def fit(lines: Iterable[str], width: int | None) -> list[str]:
    """Wrap each line to ``width`` columns (None: as they are); a continuation is
    indented four columns past its line, and a word longer than a line (a URL) is
    broken, never cut: every character stays on screen."""
    if width is None:
        return list(lines)
    width = max(width, MIN_WIDTH)
    out: list[str] = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip(" ")))
        out.extend(
            textwrap.wrap(
                line.strip(),
                width=width,
                initial_indent=indent,
                subsequent_indent=indent + "    ",
                break_long_words=True,
                break_on_hyphens=False,
            )
        )
    return out
