"""``depstrace diff A B``: what changed for each test between two runs, and why.

The typical use is "passes alone, fails in the suite": trace the test alone
(A), trace the suite (B), diff.  Pure functions over the plain request dicts of
docs/format.md.

Ids (``r1``, ``e1``) are counted per process, so two runs are never matched by
id.  Requests are matched within a test by phase, method and route (else
path) and their order among those; an engine is named by its redacted URL and
creation site; a dependency by its position among the nodes of the same name
and original callable.  For each test whose requests differ, the explanation
is the order effects (an engine, settings object or override an earlier test
made) of either side, earliest test first; traces written before order
effects were recorded fall back to each database's ``created_test``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from depstrace._order import describe as describe_effect

Record = dict[str, Any]
Key = tuple[str | None, str, str, int]  # (phase, method, route or path, occurrence)


@dataclass
class Change:
    """One aspect of a request that differs: ``what`` was ``a`` in A and ``b`` in B."""

    what: str  # database, engine, override, resolved, findings, status, request
    a: Any
    b: Any

    def to_dict(self) -> Record:
        """The JSON form."""
        return {"what": self.what, "a": self.a, "b": self.b}


@dataclass
class RequestDiff:
    """A request of one test whose two runs differ (or that only one run made)."""

    phase: str | None
    method: str
    path: str
    occurrence: int  # 1 for the first such request of the test
    changes: list[Change] = field(default_factory=list)

    def to_dict(self) -> Record:
        """The JSON form."""
        return {
            "phase": self.phase,
            "method": self.method,
            "path": self.path,
            "occurrence": self.occurrence,
            "changes": [change.to_dict() for change in self.changes],
        }


@dataclass
class TestDiff:
    """One test present in both runs whose requests differ."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    test: str
    requests: list[RequestDiff]
    # Order effects that explain it, earliest test first; each with "run": "a" or "b".
    explanations: list[Record]

    def to_dict(self) -> Record:
        """The JSON form."""
        return {
            "test": self.test,
            "requests": [request.to_dict() for request in self.requests],
            "explanations": self.explanations,
        }


@dataclass
class RunDiff:
    """Two runs compared test by test."""

    tests_compared: int
    tests: list[TestDiff]
    only_in_a: list[str]
    only_in_b: list[str]

    @property
    def differs(self) -> bool:
        """Whether any test present in both runs differs."""
        return bool(self.tests)

    def to_dict(self) -> Record:
        """The JSON form (``depstrace diff --format json``)."""
        return {
            "tests_compared": self.tests_compared,
            "tests_differing": len(self.tests),
            "tests": [test.to_dict() for test in self.tests],
            "only_in_a": self.only_in_a,
            "only_in_b": self.only_in_b,
        }


def diff_runs(a: Sequence[Record], b: Sequence[Record]) -> RunDiff:
    """Compare the request records of run ``a`` with those of run ``b``, test by test."""
    by_test_a, order_a = _by_test(a)
    by_test_b, order_b = _by_test(b)
    common = [test for test in by_test_a if test in by_test_b]
    tests = []
    for test in common:
        requests = diff_requests(by_test_a[test], by_test_b[test])
        if requests:
            explanations = explain(
                test, by_test_a[test], by_test_b[test], {"a": order_a, "b": order_b}
            )
            tests.append(TestDiff(test, requests, explanations))
    return RunDiff(
        tests_compared=len(common),
        tests=tests,
        only_in_a=[test for test in by_test_a if test not in by_test_b],
        only_in_b=[test for test in by_test_b if test not in by_test_a],
    )


def _by_test(requests: Iterable[Record]) -> tuple[dict[str, list[Record]], dict[str, int]]:
    """Requests by test, in run order, and each test's position in the run (requests
    outside tests are not compared)."""
    grouped: dict[str, list[Record]] = {}
    for request in requests:
        if request.get("test"):
            grouped.setdefault(request["test"], []).append(request)
    return grouped, {test: index for index, test in enumerate(grouped)}


def _keyed(requests: Sequence[Record]) -> dict[Key, Record]:
    seen: dict[tuple[str | None, str, str], int] = {}
    keyed = {}
    for request in requests:
        base = (request.get("phase"), request["method"], request.get("route") or request["path"])
        seen[base] = seen.get(base, 0) + 1
        key: Key = (*base, seen[base])
        keyed[key] = request
    return keyed


def diff_requests(a: Sequence[Record], b: Sequence[Record]) -> list[RequestDiff]:
    """The requests of one test that differ between two runs, in A's order then B's."""
    keyed_a, keyed_b = _keyed(a), _keyed(b)
    diffs = []
    for key in [*keyed_a, *(k for k in keyed_b if k not in keyed_a)]:
        one, other = keyed_a.get(key), keyed_b.get(key)
        shown = one if one is not None else other
        assert shown is not None
        diff = RequestDiff(key[0], shown["method"], shown["path"], key[3])
        if one is None or other is None:
            diff.changes.append(Change("request", one is not None, other is not None))
        else:
            diff.changes.extend(compare_requests(one, other))
        if diff.changes:
            diffs.append(diff)
    return diffs


def compare_requests(a: Record, b: Record) -> list[Change]:
    """What differs between two runs of one request: databases, engines, overrides,
    resolved callables, findings, status."""
    changes = []
    dbs_a, dbs_b = _databases(a), _databases(b)
    if sorted(dbs_a) != sorted(dbs_b):
        changes.append(Change("database", _db_words(a), _db_words(b)))
    engines_a = {url: engine for url, (engine, _) in dbs_a.items()}
    engines_b = {url: engine for url, (engine, _) in dbs_b.items()}
    for url in engines_a.keys() & engines_b.keys():
        if not _same_engine(engines_a[url], engines_b[url]):
            changes.append(Change("engine", engines_a[url], engines_b[url]))
    for url in dbs_a.keys() & dbs_b.keys():
        if dbs_a[url][1] != dbs_b[url][1]:
            changes.append(Change("via", dbs_a[url][1], dbs_b[url][1]))
    nodes_a, nodes_b = _nodes(a), _nodes(b)
    for key in [*nodes_a, *(k for k in nodes_b if k not in nodes_a)]:
        one, other = nodes_a.get(key), nodes_b.get(key)
        if one is None or other is None:
            name = f"{key[0]}={key[1]}"
            changes.append(Change("dependency", name if one else None, name if other else None))
        elif one["resolved"] != other["resolved"]:
            what = "override" if one["overridden"] != other["overridden"] else "resolved"
            changes.append(Change(what, _node_words(one), _node_words(other)))
    codes_a, codes_b = _codes(a), _codes(b)
    if codes_a != codes_b:
        changes.append(Change("findings", codes_a, codes_b))
    if a.get("status") != b.get("status"):
        changes.append(Change("status", a.get("status"), b.get("status")))
    return changes


def _databases(request: Record) -> dict[str, tuple[Record, str | None]]:
    """url -> (the engine as two runs can compare it, the dependency that provided it)."""
    return {
        db["url"]: (
            {
                "url": db["url"],
                "created_at": db.get("created_at"),
                "created_phase": db.get("created_phase"),
                # Made by the test itself or by another: which other is the explanation.
                "created_by_this_test": db.get("created_test") == request.get("test"),
                "created_test": db.get("created_test"),
            },
            db.get("via"),
        )
        for db in request["databases"]
    }


def _same_engine(a: Record, b: Record) -> bool:
    """Two runs' engines are one when URL, creation site and phase agree and each was
    made by its own test or each by another (the other test's name may differ)."""
    keys = ("url", "created_at", "created_phase", "created_by_this_test")
    return all(a[key] == b[key] for key in keys)


def _db_words(request: Record) -> list[Record]:
    return [{"url": db["url"], "is_test": db["is_test"]} for db in request["databases"]]


def _nodes(request: Record) -> dict[tuple[str, str, int], Record]:
    seen: dict[tuple[str, str], int] = {}
    nodes = {}
    for node in request["dependencies"]:
        base = (node["name"], node["original"])
        seen[base] = seen.get(base, 0) + 1
        key = (*base, seen[base])
        nodes[key] = node
    return nodes


def _node_words(node: Record) -> str:
    if node["overridden"]:
        return f"{node['name']}={node['resolved']} (override of {node['original']})"
    return f"{node['name']}={node['resolved']} (not overridden)"


def _codes(request: Record) -> list[str]:
    return sorted(finding["code"] for finding in request["findings"])


def explain(
    test: str, a: Sequence[Record], b: Sequence[Record], order: dict[str, dict[str, int]]
) -> list[Record]:
    """The order effects behind one test's differences, earliest earlier test first.

    ``order`` maps each run (``a``, ``b``) to its tests' positions; an earlier test
    that made no request has no position and sorts first (it ran before any test
    that did).
    """
    found: dict[tuple[str, str, str, str | None], Record] = {}
    for run, requests in (("a", a), ("b", b)):
        for request in requests:
            effects = request.get("order_effects")
            if effects is None:  # a trace from before order effects: what engines say
                effects = _engine_effects(request)
            for effect in effects:
                if not isinstance(effect, dict) or not isinstance(
                    effect.get("created_in_test"), str
                ):
                    continue  # a hand-edited or foreign record
                key = (run, str(effect.get("kind")), effect["created_in_test"], effect.get("site"))
                found.setdefault(key, effect | {"run": run})

    def position(effect: Record) -> tuple[str, int]:
        return (effect["run"], order[effect["run"]].get(effect["created_in_test"], -1))

    return sorted(found.values(), key=position)


def _engine_effects(request: Record) -> list[Record]:
    return [
        {
            "kind": "engine",
            "object": db["engine_id"],
            "url": db["url"],
            "created_in_test": db["created_test"],
            "phase": db.get("created_phase"),
            "site": db.get("created_at"),
            "dependency": db.get("via"),
        }
        for db in request["databases"]
        if db.get("created_test") and db["created_test"] != request.get("test")
    ]


# -- words -----------------------------------------------------------------------------


def render(diff: RunDiff, a_name: str, b_name: str) -> list[str]:
    """The text of ``depstrace diff``: per differing test its requests' changes, then why."""
    lines = [
        f"depstrace diff: A = {a_name}, B = {b_name}: {_tests(diff.tests_compared)} in both, "
        f"{len(diff.tests)} differ{'s' if len(diff.tests) == 1 else ''}"
    ]
    for test in diff.tests:
        lines += ["", test.test]
        for request in test.requests:
            nth = f", request {request.occurrence}" if request.occurrence > 1 else ""
            lines.append(f"  {request.method} {request.path} ({request.phase}{nth})")
            for change in request.changes:
                lines.extend(f"    {line}" for line in _change_words(change))
        if test.explanations:
            first = test.explanations[0]
            alone = "runs without it" if first.get("kind") == "override" else "builds its own"
            lines.append(
                f"  why: in {first['run'].upper()}, {describe_effect(first)}: "
                f"run alone, this test {alone}"
            )
            lines.extend(
                f"    also in {effect['run'].upper()}, {describe_effect(effect)}"
                for effect in test.explanations[1:]
            )
        else:
            lines.append("  why: no engine, settings or override of an earlier test explains it")
    for side, tests in (("A", diff.only_in_a), ("B", diff.only_in_b)):
        if tests:
            lines += ["", f"only in {side}: {_tests(len(tests))} ({_first(tests)})"]
    return lines


def _change_words(change: Change) -> list[str]:
    if change.what == "request":
        return ["only in A" if change.a else "only in B"]
    if change.what == "findings":
        new = [code for code in change.b if code not in change.a]
        gone = [code for code in change.a if code not in change.b]
        said = " ".join([f"+{code}" for code in new] + [f"-{code}" for code in gone])
        return [
            f"findings  {said or 'the same codes, other counts'} "
            f"(A: {_list(change.a)}; B: {_list(change.b)})"
        ]
    if change.what == "engine":
        a, b = _engine_words(change.a), _engine_words(change.b)
    elif change.what == "database":
        a, b = _databases_words(change.a), _databases_words(change.b)
    else:
        a, b = _list(change.a), _list(change.b)
    return [f"{change.what:<9} A {a}", f"{'':<9} B {b}"]


def _databases_words(databases: list[Record]) -> str:
    said = [
        f"{db['url']} ({'test' if db['is_test'] else 'not a test database'})" for db in databases
    ]
    return ", ".join(said) or "none"


def _engine_words(engine: Record) -> str:
    if engine["created_by_this_test"]:
        made = "by this test"
    else:
        made = f"in {engine['created_test']}" if engine["created_test"] else "outside any test"
    where = engine["created_at"] or "an unseen site"
    return f"{engine['url']} created at {where} during {engine['created_phase']} ({made})"


def _list(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def _tests(count: int) -> str:
    return f"{count} test" + ("" if count == 1 else "s")


def _first(tests: Sequence[str], shown: int = 3) -> str:
    more = f", +{len(tests) - shown} more" if len(tests) > shown else ""
    return ", ".join(tests[:shown]) + more
