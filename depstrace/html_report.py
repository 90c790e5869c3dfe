"""The HTML report: one self-contained page (inline CSS and JavaScript, no request
to anywhere) built from the plain dicts of docs/format.md.

The page is written while the records stream by (:meth:`HtmlReport.add`), so a
run of any size costs flat memory here: each request goes into the page as one
JSON element and is forgotten; only the engines and a bounded summary per
finding code are kept.  The browser builds the DOM on demand: the table shows
the first rows of what the filters keep and renders more on request, and a
request's dependency tree is built when it is opened (docs/report.md).

Every value reaches the page as JSON inside ``<script type="application/json">``
with ``<``, ``>`` and ``&`` escaped, and the script puts it in the DOM with
``textContent`` only: a test id or path holding ``</script>`` stays text.
"""

from __future__ import annotations

import html
import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TextIO

from depstrace.account import WRITE_OPERATIONS
from depstrace.explain import page as explanation

Record = dict[str, Any]

# Bound once, at import: the plugin writes the page while a test's patches may still
# be in place (docs/format.md, invisibility).
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})

SHOWN_MESSAGES = 10  # distinct messages a finding code lists; the table filter finds the rest
SHOWN_TESTS = 10
SHOWN_REQUESTS = 20  # requests an engine lists (it counts them all)
SHOWN_EVENTS = 500  # guard records and calls outside requests the run panel lists (it counts all)


def _json(value: Any) -> str:
    """``value`` as JSON that cannot end the ``<script>`` element it sits in."""
    return _encode(value).translate(_SAFE)


def _asset(name: str) -> str:
    return resources.files("depstrace").joinpath("_html").joinpath(name).read_text(encoding="utf-8")


@dataclass
class _Code:
    """What the findings table says about one code, bounded however many findings."""

    severity: str
    count: int = 0
    tests: set[str] = field(default_factory=set)
    messages: dict[str, int] = field(default_factory=dict)
    hints: dict[str, None] = field(default_factory=dict)

    def add(self, finding: Record, test: str | None) -> None:
        self.count += 1
        if test is not None:
            self.tests.add(test)
        message = finding.get("message", "")
        if message in self.messages or len(self.messages) < SHOWN_MESSAGES:
            self.messages[message] = self.messages.get(message, 0) + 1
        if finding.get("hint") and len(self.hints) < SHOWN_MESSAGES:
            self.hints.setdefault(finding["hint"])

    def to_dict(self, code: str) -> Record:
        return {
            "code": code,
            "severity": self.severity,
            "count": self.count,
            "tests": len(self.tests),
            "first_tests": sorted(self.tests)[:SHOWN_TESTS],
            "messages": [{"text": m, "count": n} for m, n in self.messages.items()],
            "hints": list(self.hints),
            "page": explanation(code),
        }


def _dependency(node: Record) -> Record:
    return {
        "id": node["id"],
        "name": node["name"],
        "original": node["original"],
        "resolved": node["resolved"],
        "overridden": node["overridden"],
        "override_site": node.get("override_site"),
        "site": node.get("resolved_site"),
        "cached": node["cached"],
        "kind": node.get("kind"),
        "parent": node["parent"],
        "ms": node.get("duration_ms"),
        "error": node.get("error"),
        "value": node.get("value"),
        "engine_id": node.get("engine_id"),
    }


def _database(db: Record) -> Record:
    return {
        "url": db["url"],
        "engine_id": db["engine_id"],
        "database": db.get("database"),
        "is_test": db["is_test"],
        "statements": db["statements"],
        "operations": db.get("operations") or {},
        "commits": db.get("commits") or 0,
        "via": db["via"],
        "origin": db.get("origin"),
    }


def _call(call: Record) -> Record:
    return {
        "target": call.get("target"),
        "system": call.get("system"),
        "library": call.get("library"),
        "host": call.get("host"),
        "fake": call.get("fake"),
        "allowed": call.get("allowed"),
        "count": call.get("count"),
        "operations": call.get("operations") or {},
    }


def _effect(effect: Record) -> Record:
    return {
        "kind": effect.get("kind"),
        "object": effect.get("object"),
        "url": effect.get("url"),
        "test": effect.get("created_in_test"),
        "phase": effect.get("phase"),
        "site": effect.get("site"),
        "dependency": effect.get("dependency"),
    }


def _guard(proc: int, record: Record) -> Record:
    return {
        "p": proc,
        "action": record.get("action"),
        "mode": record.get("mode"),
        "operation": record.get("operation"),
        "table": record.get("table"),
        "url": record.get("url"),
        "engine_id": record.get("engine_id"),
        "test": record.get("test"),
        "phase": record.get("phase"),
        "fixture": (record.get("fixture") or {}).get("name"),
        "request": record.get("request"),
        "allowed_by": record.get("allowed_by"),
        "findings": [f.get("code") for f in record.get("findings") or ()],
    }


@dataclass
class _Events:
    """A bounded list of run-level rows and how many there were."""

    rows: list[Record] = field(default_factory=list)
    count: int = 0

    def add(self, row: Record) -> None:
        self.count += 1
        if len(self.rows) < SHOWN_EVENTS:
            self.rows.append(row)


class HtmlReport:
    """Writes the page to ``out``: :meth:`add` each record, then :meth:`finish` once."""

    def __init__(self, out: TextIO, *, title: str = "depstrace report") -> None:
        self._out = out
        self._rows = 0
        self._processes: dict[Hashable, int] = {}
        self._engines: dict[str, Record] = {}
        self._codes: dict[str, _Code] = {}
        self._refused = _Events()
        self._allowed = _Events()
        self._outside = _Events()  # one row per target of each outside_calls record
        out.write(
            _asset("head.html")
            .replace("{style}", _asset("report.css"))
            .replace("{title}", html.escape(title))
        )
        out.write('<script type="application/json" id="ds-requests">[')

    def _process(self, process: Hashable) -> int:
        return self._processes.setdefault(process, len(self._processes))

    def add(self, process: Hashable, record: Record) -> None:
        """Take one ``request`` (written out now), ``engine``, ``guard`` or ``outside_calls``
        record (kept, bounded); others are ignored. ``process`` tells apart records of
        different processes (ids repeat)."""
        kind = record.get("type")
        if kind == "engine":
            key = f"{self._process(process)}:{record['id']}"
            self._engines[key] = {
                "key": key,
                "id": record["id"],
                "worker": record.get("worker"),
                "url": record["url"],
                "database": record.get("database"),
                "is_test": record.get("is_test"),
                "created_at": record.get("created_at"),
                "created_phase": record.get("created_phase"),
                "created_test": record.get("created_test"),
                "env_vars": record.get("env_vars") or [],
                "requests": 0,
                "first": [],
            }
        elif kind == "request":
            self._request(self._process(process), record)
        elif kind == "guard":
            events = self._refused if record.get("action") == "refused" else self._allowed
            events.add(_guard(self._process(process), record))
        elif kind == "outside_calls":
            fixture = (record.get("fixture") or {}).get("name")
            for call in record.get("calls") or ():
                self._outside.add(
                    {"test": record.get("test"), "phase": record.get("phase"), "fixture": fixture}
                    | _call(call)
                )

    def _request(self, proc: int, record: Record) -> None:
        reads = writes = 0
        for db in record["databases"]:
            for verb, count in (db.get("operations") or {}).items():
                if verb in WRITE_OPERATIONS:
                    writes += count
                else:
                    reads += count
            engine = self._engines.get(f"{proc}:{db['engine_id']}")
            if engine is not None:
                engine["requests"] += 1
                if len(engine["first"]) < SHOWN_REQUESTS:
                    engine["first"].append(self._rows)
        for finding in record["findings"]:
            code = self._codes.setdefault(finding["code"], _Code(finding.get("severity", "")))
            code.add(finding, record.get("test"))
        row = {
            "id": record.get("id"),
            "p": proc,
            "worker": record.get("worker"),
            "test": record.get("test"),
            "phase": record.get("phase"),
            "method": record.get("method"),
            "path": record.get("path"),
            "route": record.get("route"),
            "status": record.get("status"),
            "error": record.get("error"),
            "ms": record.get("duration_ms"),
            "app": (record.get("app") or {}).get("title"),
            "reads": reads,
            "writes": writes,
            "dbs": [_database(db) for db in record["databases"]],
            "deps": [_dependency(node) for node in record["dependencies"]],
            "calls": [_call(c) for c in record.get("calls") or () if isinstance(c, dict)],
            "order": [_effect(e) for e in record.get("order_effects") or () if isinstance(e, dict)],
            "findings": [
                {k: f.get(k) for k in ("code", "severity", "message", "hint")}
                for f in record["findings"]
            ],
        }
        self._out.write(("," if self._rows else "") + _json(row) + "\n")
        self._rows += 1

    def finish(
        self,
        *,
        headline: str,
        account: Sequence[str],
        run_findings: Sequence[Record],
        problems: Sequence[str] = (),
        gate: Sequence[str] = (),
        trace: str | None = None,
        tests: int = 0,
        status: int | None = None,
    ) -> None:
        """Write what is known only at the end (totals, findings, engines) and the script."""
        for finding in run_findings:
            code = self._codes.setdefault(finding["code"], _Code(finding.get("severity", "")))
            code.add(finding, finding.get("test"))
        run = {
            "headline": headline,
            "account": list(account),
            "problems": list(problems),
            "gate": list(gate),
            "trace": trace,
            "status": status,
            "totals": {
                "requests": self._rows,
                "tests": tests,
                "engines": len(self._engines),
                "findings": sum(c.count for c in self._codes.values()),
            },
            "codes": [c.to_dict(code) for code, c in self._codes.items()],
            "run_findings": [
                {k: f.get(k) for k in ("code", "severity", "message", "hint", "test", "phase")}
                for f in run_findings
            ],
            "engines": list(self._engines.values()),
            "guard": {
                "refused": self._refused.rows,
                "refused_count": self._refused.count,
                "allowed": self._allowed.rows,
                "allowed_count": self._allowed.count,
            },
            "outside_calls": self._outside.rows,
            "outside_calls_count": self._outside.count,
        }
        self._out.write("]</script>\n")
        self._out.write(f'<script type="application/json" id="ds-run">{_json(run)}</script>\n')
        self._out.write(f"<script>{_asset('report.js')}</script>\n</body>\n</html>\n")
