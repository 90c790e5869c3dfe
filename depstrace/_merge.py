"""One run from the records of several processes: pytest-xdist workers, CI shards.

A run split across processes is still one run.  The pytest-xdist controller
reads its workers' trace files (:func:`read_worker`) into its own, in test
order (:func:`in_test_order`); ``depstrace report`` reads any number of files
(:func:`load`).  Both end in :func:`combine`, so the terminal account and a
report of the merged file say the same thing.

Ids (``r1``, ``e1``, ``app1``) are counted per process: a record's process is
its file and its ``worker`` field, and records of two processes are never
matched by id.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depstrace._jsonl import Scan, scan, stream
from depstrace._validate import problem_with
from depstrace.findings import OVERRIDE_UNUSED

Record = dict[str, Any]
Entry = tuple[Hashable, Record]  # (the process that wrote it, the record)
Select = Callable[[Record], bool]  # keeps a request or finding record (report filters)
Tap = Callable[[Hashable, Record], None]  # sees each kept record as it streams by


@dataclass
class Run:
    """What the account says about one run, however many processes traced it."""

    requests: list[Record] = field(default_factory=list)
    run_findings: list[Record] = field(default_factory=list)
    guard: list[Record] = field(default_factory=list)  # guard mode's refusals and allowed uses
    rule: str | None = None
    internal_errors: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # damaged or missing input


def combine(
    entries: Iterable[Entry],
    *,
    rule: str | None = None,
    internal_errors: int = 0,
    notes: Sequence[str] = (),
    problems: Sequence[str] = (),
    select: Select | None = None,
    tap: Tap | None = None,
    slim: bool = False,
) -> Run:
    """The run told by ``entries``, in their order.

    Every request counts.  A finding tied to no request that several processes
    made alike (an import-time statement every worker repeats) is told once,
    and an unused override another process of the run did consult is no
    finding: each process saw only its share of the tests.

    ``select`` keeps only some requests and findings (``depstrace report --test``);
    every request still counts as a consultation of its overrides.  ``tap`` sees
    each kept request, ``guard`` and ``outside_calls`` record and every ``engine``
    record (the HTML report).  ``slim``
    keeps memory flat over any number of requests: a request without findings
    whose databases are all test databases is kept as a shared stand-in that
    holds only what the verdict counts (its test, whether it reached a database),
    since the account names only requests that found something; one that did
    keeps only the dependencies on its databases' chains (what the account prints)
    and the fields a report reads, sharing equal values with the requests before it.
    """
    run = Run(
        rule=rule, internal_errors=internal_errors, notes=list(notes), problems=list(problems)
    )
    findings: list[Entry] = []
    rules: dict[str, None] = {}
    consulted: dict[tuple[str, str], set[Hashable]] = {}
    stand_ins: dict[tuple[Any, bool], Record] = {}
    shared: dict[Any, Any] = {}
    for process, record in entries:
        kind = record["type"]
        if kind == "request":
            for node in record["dependencies"]:
                if node["overridden"]:
                    pair = (node["original"], node["resolved"])
                    consulted.setdefault(pair, set()).add(process)
            if select is not None and not select(record):
                continue
            if tap is not None:
                tap(process, record)
            clean = not record["findings"] and all(d["is_test"] for d in record["databases"])
            if slim:
                record = (  # noqa: PLW2901
                    _stand_in(stand_ins, record) if clean else _slim(_chains_only(record), shared)
                )
            run.requests.append(record)
        elif kind == "engine":
            if tap is not None:
                tap(process, record)
        elif kind in ("guard", "outside_calls"):
            if select is not None and not select(record):
                continue
            if kind == "guard":
                run.guard.append(record)
            if tap is not None:
                tap(process, record)
        elif kind == "finding":
            findings.append((process, record))
        elif kind == "session" and record.get("test_db_rule"):
            rules.setdefault(record["test_db_rule"])
        elif kind == "summary":
            run.internal_errors += record["internal_errors"]
            run.notes.extend(n for n in record.get("notes", ()) if isinstance(n, str))
        elif kind == "workers":
            for worker in record["workers"]:
                run.problems.extend(worker["problems"])
    if run.rule is None and rules:
        run.rule = next(iter(rules))
    if len(rules) > 1:
        run.problems.append(
            "the processes of this run judged test databases by different rules: "
            + "; ".join(rules)
        )
    told: dict[tuple[Any, ...], Hashable] = {}
    for process, finding in findings:
        if finding["code"] == OVERRIDE_UNUSED:
            pair = (finding.get("key"), finding.get("value"))
            if consulted.get(pair, set()) - {process}:
                continue
        # A finding made at the end of a process (phase null: an unused override)
        # is about the run, whichever test of that process registered it.
        test = finding.get("test") if finding.get("phase") is not None else None
        ident = (finding["code"], finding["message"], finding.get("phase"), test)
        if told.setdefault(ident, process) != process:
            continue  # another process of the run already told it
        if select is None or select(finding):
            run.run_findings.append(finding)
    return run


# What a stand-in holds, shared by all of them (nothing writes to a request record).
_SEEN_DB = {"is_test": True, "url": "", "operations": {}, "commits": 0}
_ON_A_DATABASE: list[Record] = [_SEEN_DB]
_NOTHING: list[Record] = []


# What no report reads from a kept request: unique per request (its start, its trace
# id, its and its dependencies' durations), they would defeat the sharing below.
_UNREAD = frozenset({"type", "schema", "started", "duration_ms", "trace_id"})
_UNREAD_INSIDE = frozenset({"duration_ms"})  # of a dependency node


def _slim(request: Record, shared: dict[Any, Any]) -> Record:
    """``request`` without the fields no report reads, each of its values one shared
    object for all the requests that hold an equal one (see :func:`_share`): an
    offending request of a long run costs one small dict of its own."""
    return {
        shared.setdefault(k, k): v if k == "id" else _share(v, shared)[1]  # ids never repeat
        for k, v in request.items()
        if k not in _UNREAD
    }


def _share(value: Any, shared: dict[Any, Any]) -> tuple[Any, Any]:
    """``(key, value)``: ``key`` tells equal values apart from unequal ones (types, and
    key order, included: ``1`` is not ``true``), ``value`` is the first equal value seen
    (``shared`` maps keys to them).  Every request of a route repeats the same
    dependency chain, database entry, finding and hint.  Nothing writes to a kept
    record; two equal entries of one list stay two objects (``account`` tells a
    request's databases apart by identity)."""
    if isinstance(value, str):
        value = shared.setdefault(value, value)
        return value, value
    if isinstance(value, dict):
        items = [(k, *_share(v, shared)) for k, v in value.items() if k not in _UNREAD_INSIDE]
        key: Any = ("{", *((shared.setdefault(k, k), inner) for k, inner, _ in items))
        found = shared.get(key)
        if found is None:
            found = shared[key] = {k: v for k, _, v in items}
        return key, found
    if isinstance(value, list):
        pairs = [_share(v, shared) for v in value]
        key = ("[", *(inner for inner, _ in pairs))
        found = shared.get(key)
        if found is None:
            seen: set[int] = set()
            found = []
            for _, v in pairs:
                if isinstance(v, dict | list) and id(v) in seen:
                    v = v.copy()  # noqa: PLW2901
                seen.add(id(v))
                found.append(v)
            shared[key] = found
        return key, found
    if isinstance(value, float):
        return (float, repr(value)), value  # -0.0 == 0.0, but JSON tells them apart
    return (type(value), value), value


def _chains_only(request: Record) -> Record:
    """``request`` with only the dependencies that lead from an endpoint to a database."""
    nodes = {node["id"]: node for node in request["dependencies"]}
    kept: set[Any] = set()
    for db in request["databases"]:
        ident = db.get("via_id")
        while ident is not None and ident not in kept and ident in nodes:
            kept.add(ident)
            ident = nodes[ident]["parent"]
    if len(kept) == len(nodes):
        return request
    return request | {"dependencies": [n for n in request["dependencies"] if n["id"] in kept]}


def _stand_in(stand_ins: dict[tuple[Any, bool], Record], request: Record) -> Record:
    """One shared record for every clean request of a test (see :func:`combine`)."""
    key = (request["test"], bool(request["databases"]))
    found = stand_ins.get(key)
    if found is None:
        found = stand_ins[key] = {
            "test": key[0],
            "databases": _ON_A_DATABASE if key[1] else _NOTHING,
            "dependencies": _NOTHING,
            "findings": _NOTHING,
        }
    return found


def load(
    paths: Sequence[str | os.PathLike[str]],
    *,
    select: Select | None = None,
    tap: Tap | None = None,
    slim: bool = False,
) -> tuple[Run, int]:
    """The run told by several trace files (shards, workers, whole runs).

    Returns the run and how many files could be read.  Damage is in
    ``run.problems``: an unreadable file, a cut last line (with its byte count),
    a malformed line or record (with its line and field), a file without a
    ``summary`` record (its process never finished).  The files are read one
    record at a time; ``select``, ``tap`` and ``slim`` are :func:`combine`'s.
    """
    problems: list[str] = []
    readable = [0]

    def entries() -> Iterator[Entry]:
        for index, path in enumerate(paths):
            found = Scan(os.fspath(path))
            try:
                records = stream(path, found)
            except OSError as exc:
                problems.append(f"{os.fspath(path)}: cannot read: {exc.strerror or exc}")
                continue
            readable[0] += 1
            finished = False
            for line, record in records:
                issue = problem_with(record)
                if issue is not None:
                    found.bad_lines.append(f"{found.path}:{line}: {issue}")
                    continue
                finished = finished or record["type"] == "summary"
                yield (index, record.get("worker")), record
            problems.extend(found.problems())
            if found.seen and not finished:
                problems.append(
                    f"{found.path}: no summary record: the run it traces did not finish "
                    "(killed?) or is still running; what it did after its last flush is missing"
                )

    run = combine(entries(), select=select, tap=tap, slim=slim)
    run.problems[:0] = problems
    return run, readable[0]


@dataclass
class WorkerTrace:
    """What one pytest-xdist worker left in its trace file."""

    worker: str
    file: Path
    records: list[Record] = field(default_factory=list)  # tagged with ``worker``; no summary
    summary: Record | None = None
    problems: list[str] = field(default_factory=list)

    def entry(self) -> Record:
        """This worker's entry in the merged file's ``workers`` record."""
        return {
            "id": self.worker,
            "file": self.file.name,
            "records": len(self.records),
            "finished": self.summary is not None,
            "problems": self.problems,
        }


def read_worker(path: Path, worker: str) -> WorkerTrace:
    """Read the trace file of ``worker``, saying what is damaged or missing."""
    trace = WorkerTrace(worker, path)
    try:
        found = scan(path, label=path.name)
    except FileNotFoundError:
        trace.problems.append(
            f"worker {worker} left no trace file ({path.name}): it died before depstrace "
            "started, or ran on another machine (merge its file with depstrace report)"
        )
        return trace
    except OSError as exc:
        trace.problems.append(f"{path.name}: cannot read: {exc.strerror or exc}")
        return trace
    for line, record in found.records:
        issue = problem_with(record)
        if issue is not None:
            trace.problems.append(f"{path.name}:{line}: {issue}")
        elif record["type"] == "summary":
            trace.summary = record
        else:
            trace.records.append(record | {"worker": worker})
    trace.problems[:0] = found.problems(who="a worker")
    if trace.summary is None:
        trace.problems.append(
            f"worker {worker} did not finish its trace (it crashed or was killed): what it "
            "did after its last flush is missing"
        )
    return trace


def in_test_order(records: Iterable[Record], order: Mapping[str, int]) -> list[Record]:
    """Records of several workers in the order a serial run would have written them.

    ``order`` maps node ids to their collection index.  ``session`` and
    ``engine`` records come first; then what happened outside tests, each test
    in collection order, and the findings of the end of the run (phase null).
    The sort is stable: one test's records stay in the order they were made.
    """
    last = len(order)

    def key(record: Record) -> tuple[int, int]:
        kind = record["type"]
        if kind in ("session", "engine"):
            return (0, 0)
        if kind == "finding" and record.get("phase") is None:
            return (3, 0)
        test = record.get("test")
        if test is None:
            return (1, 0)
        return (2, order.get(test, last))

    return sorted(records, key=key)
