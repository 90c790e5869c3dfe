"""Rules that turn what a request did into findings with a code, message and hint.

Codes are stable (users search for them in Jaeger and grep for them in CI
logs); the list lives in DESIGN.md §2 and docs/format.md, and each has a page
in docs/findings/ that ``depstrace explain CODE`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from depstrace._names import callable_label, via_node
from depstrace._order import describe as describe_effect
from depstrace._words import TEST_WORDS, Words

WRONG_DB = "WRONG_DB"
DI_BYPASS = "DI_BYPASS"
OVERRIDE_IDENTITY_MISMATCH = "OVERRIDE_IDENTITY_MISMATCH"
OVERRIDE_NOT_VISIBLE = "OVERRIDE_NOT_VISIBLE"
OVERRIDE_LEAKED = "OVERRIDE_LEAKED"
OVERRIDE_UNUSED = "OVERRIDE_UNUSED"
ENGINE_FROM_ENV = "ENGINE_FROM_ENV"
DB_OUTSIDE_REQUEST = "DB_OUTSIDE_REQUEST"
LOOP_MISMATCH = "LOOP_MISMATCH"
SESSION_NOT_COMMITTED = "SESSION_NOT_COMMITTED"
DUPLICATE_SESSION = "DUPLICATE_SESSION"
EXTERNAL_CALL = "EXTERNAL_CALL"

# Computed from the request record alone by :func:`request_findings`; the others
# are found while the request runs and kept as they are when a record is re-judged.
RECORD_CODES = frozenset({WRONG_DB, DI_BYPASS, ENGINE_FROM_ENV, DUPLICATE_SESSION, EXTERNAL_CALL})


def _bypass_hint(words: Words) -> str:
    return (
        "Take the session from a dependency (Depends(get_db)) and pass it on instead of "
        f"opening it from a module-level engine, or {words.point_engine}."
    )


@dataclass(frozen=True)
class Finding:
    """One reason a request (or the run) deserves a look."""

    code: str
    severity: str  # "error" or "warning"
    message: str
    hint: str
    engine_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The entry of ``request.findings``."""
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "engine_id": self.engine_id,
        }


def request_findings(request: dict[str, Any], words: Words = TEST_WORDS) -> list[Finding]:
    """Findings computed from one closed request dict whose databases carry ``is_test``."""
    findings: list[Finding] = []
    where = f"{request['method']} {request['path']}"
    nodes = {node["id"]: node for node in request["dependencies"]}
    for db in request["databases"]:
        if db["is_test"]:
            continue
        earlier = _earlier_effects(db, request.get("order_effects") or (), nodes)
        findings.append(_wrong_db(where, db, via_node(db, nodes), words, earlier))
        if db["via"] is None:
            origin = db.get("origin")
            source = f" It was reached from {origin}." if origin else ""
            findings.append(
                Finding(
                    code=DI_BYPASS,
                    severity="error",
                    message=(
                        f"{where} used engine {db['engine_id']} ({db['url']}) although no "
                        "dependency of the request provided it: the session was opened "
                        "outside Depends (a module-level SessionLocal, a middleware, a "
                        "service or a background task), so app.dependency_overrides cannot "
                        f"replace it.{source}"
                    ),
                    hint=_bypass_hint(words),
                    engine_id=db["engine_id"],
                )
            )
        if db.get("env_vars"):
            made = [effect for effect in earlier if effect.get("kind") == "engine"]
            findings.append(_from_env(where, db, words, made))
    findings.extend(_duplicate_sessions(where, request["dependencies"]))
    for call in request.get("calls") or ():  # traces written before calls were recorded
        if call.get("allowed") is False:
            findings.append(_external(f"{where} called {_call(call)}", call))
    return findings


_EXTERNAL_HINT = (
    "Give the code that makes this call a test double: override the dependency that "
    "provides the client, or use httpx.MockTransport, responses/requests-mock, moto or "
    "fakeredis; if the tests may reach this host, allow it with DEPSTRACE_ALLOW_HOSTS={host}."
)


def _call(call: dict[str, Any]) -> str:
    operations = ", ".join(f"{op} {n}" for op, n in (call.get("operations") or {}).items())
    return f"{call.get('target')} ({operations}) through {call.get('library')}"


def _external(head: str, call: dict[str, Any]) -> Finding:
    host = call.get("host") or ""
    return Finding(
        code=EXTERNAL_CALL,
        severity="error",
        message=(
            f"{head}: {host} is not a loopback host, the call went to no fake or test transport, "
            "and DEPSTRACE_ALLOW_HOSTS does not allow it: the code under test called a real "
            "outside service (recorded before sending, whether or not it answered)"
        ),
        hint=_EXTERNAL_HINT.format(host=host),
    )


def external_outside(data: dict[str, Any], call: dict[str, Any]) -> Finding:
    """``EXTERNAL_CALL`` for a call outside any request (``data``: its ``outside_calls``)."""
    fixture = data.get("fixture")
    test = data["test"] or "no test"
    if fixture is not None:
        stage = "teardown" if data["phase"] == "teardown" else "setup"
        when = f"during the {stage} of {describe_fixture(fixture)}"
        if fixture["scope"] == "function":
            when += f" for {test}"
    elif data["test"]:
        when = f"during the {data['phase']} phase of {test}"
    else:
        when = f"in code running at {data['phase']} time"
    return _external(f"{_call(call)} was called outside any request, {when}", call)


def _earlier_effects(
    db: dict[str, Any], effects: Iterable[dict[str, Any]], nodes: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The order effects (docs/format.md) behind ``db``: its engine, and what an earlier
    test made for the dependency that provided it or for one below that dependency."""
    found = []
    for effect in effects:
        if not isinstance(effect, dict) or not effect.get("created_in_test"):
            continue  # a hand-edited or foreign record: say nothing rather than fail
        if effect.get("kind") == "engine":
            if effect.get("object") == db["engine_id"]:
                found.append(effect)
            continue
        node = nodes.get(effect.get("dependency_id", -1))
        hops = len(nodes)  # a damaged parent chain cannot loop
        while node is not None and db.get("via_id") is not None and hops >= 0:
            if node["id"] == db["via_id"]:
                found.append(effect)
                break
            node = nodes.get(node["parent"]) if node["parent"] is not None else None
            hops -= 1
    return found


def _wrong_db(
    where: str,
    db: dict[str, Any],
    via: dict[str, Any] | None,
    words: Words,
    earlier: Sequence[dict[str, Any]] = (),
) -> Finding:
    engine = f"engine {db['engine_id']}{_created(db)}"
    if db["via"] is not None:
        # Named so the name finds the object the route used (a wrapper is not
        # the function whose name it carries).
        resolved = callable_label(via, "resolved", inline=True) if via else db["via_callable"]
        original = callable_label(via, "original") if via else db["via_original"]
        provider = f"through dependency {db['via']!r} ({resolved})"
        hint = words.wrong_db_fix.format(original=original, where=where)
    else:
        provider = "through no dependency of this request"
        hint = _bypass_hint(words)
    early = ""
    if db["via"] is not None and db.get("created_phase") in ("import", "startup", "collection"):
        early = (
            f". The engine was built at {db['created_phase']} time, {words.too_early}: "
            f"create it lazily (a cached factory) or {words.build_later}"
        )
    if earlier:
        # Said the way the user asks it: why does this test pass alone?
        made = "; ".join(describe_effect(effect) for effect in earlier)
        built = any(effect.get("kind") != "override" for effect in earlier)
        alone = words.run_alone if built else words.run_alone_override
        early += f". Order effect: {made}; {alone}"
        hint = words.order_fix  # the fix of the cause, not of the symptom
    return Finding(
        code=WRONG_DB,
        severity="error",
        message=(
            f"{where} {_ran(db)} on {db['url']} ({engine}) "
            f"{provider}; it is not a test database{early}{_unseen(db)}"
        ),
        hint=hint,
        engine_id=db["engine_id"],
    )


def _from_env(
    where: str, db: dict[str, Any], words: Words, earlier: Sequence[dict[str, Any]] = ()
) -> Finding:
    names = ", ".join(f"${name}" for name in db["env_vars"])
    origins = db.get("env_origins") or {}
    told = [
        _env_origin(name, origins[name], words, db.get("created_test"))
        for name in db["env_vars"]
        if name in origins
    ]
    # A trace written before origins were recorded: say what is known in general.
    why = "".join(f". {s}" for s in told if s) or (
        ". The environment (a CI secret, a .env file, the shell) won over the "
        "configuration meant for this run"
    )
    if earlier:  # the variable held that value while an earlier test built the engine
        why += f". Order effect: {describe_effect(earlier[0])}; {words.run_alone}"
    return Finding(
        code=ENGINE_FROM_ENV,
        severity="error",
        message=(
            f"{where}: engine {db['engine_id']} ({db['url']}{_created(db)}) was built from "
            f"the environment: {names} holds exactly this URL (value not shown){why}"
        ),
        hint=words.env_fix.format(names=names, name=db["env_vars"][0]),
        engine_id=db["engine_id"],
    )


def _env_origin(
    name: str, origin: dict[str, Any], words: Words, built_in: str | None = None
) -> str:
    """One sentence: when ``$name`` got its value, and the lines that may have set it."""
    test = origin.get("during_test")
    if test is None:
        by = "the run set it"
    elif test == built_in:
        by = f"it was set during {test}, the test that built the engine"
    else:
        by = f"it was set during {test}, which never restored it"
    when = {
        "before_start": f"${name} was already set when {words.started} (exported by the "
        "shell, a CI job or a process manager) and kept that value",
        "changed": f"${name} was set when {words.started} and changed since"
        + (f": {by}" if test is not None else ""),
        "during_run": f"${name} was not set when {words.started}: {by}",
    }.get(origin.get("set") or "", "")
    lines = "; ".join(f"{line['at']} {line['how']}" for line in origin.get("lines", []))
    if lines:
        return f"{when}; {lines}" if when else f"${name}: {lines}"
    return when


def _duplicate_sessions(where: str, dependencies: list[dict[str, Any]]) -> list[Finding]:
    fresh: dict[str, list[dict[str, Any]]] = {}
    for node in dependencies:
        if node["cached"] or node.get("engine_id") is None:
            continue
        value = node.get("value") or ""
        if not value.rpartition(":")[2].endswith("Session"):
            continue
        fresh.setdefault(node["original"], []).append(node)
    findings = []
    for original, nodes in fresh.items():
        if len(nodes) < 2:
            continue
        names = ", ".join(repr(n["name"]) for n in nodes)
        findings.append(
            Finding(
                code=DUPLICATE_SESSION,
                severity="warning",
                message=(
                    f"{where} opened {len(nodes)} sessions from {original} (dependencies "
                    f"{names}): FastAPI caches a dependency per request only when every use "
                    "has the same cache key, and Security scopes or use_cache=False give "
                    "different keys. Writes made through one session are invisible to the "
                    "other until committed"
                ),
                hint=(
                    "Depend on the session once (a single Depends(get_db) that the other "
                    "dependencies receive), or give every use the same Security scopes."
                ),
                engine_id=nodes[0].get("engine_id"),
            )
        )
    return findings


# When statements with no test running ran, by the phase pytest was in.
_NO_TEST = {
    "startup": "while pytest was starting (importing conftest.py, loading plugins), "
    "before any test",
    "collection": "while pytest was collecting (importing test modules), before any test",
}


def outside_request(use: dict[str, Any], words: Words = TEST_WORDS) -> Finding:
    """``DB_OUTSIDE_REQUEST`` for statements on a non-test engine outside any request."""
    test = use["test"] or "no test"  # a function-scoped fixture always has one
    origin = f" Reached from {use['origin']}." if use.get("origin") else ""
    fixture = use.get("fixture")
    if fixture is not None:
        # A session- or module-scoped fixture runs in whichever test first needs it
        # (or last, for teardown): name the fixture, not that test.
        stage = "teardown" if use["phase"] == "teardown" else "setup"
        when = f"during the {stage} of {describe_fixture(fixture)}"
        if fixture["scope"] == "function":
            when += f" for {test}"
        who = f"{when}: that fixture used a non-test database directly."
    elif use["test"] is None:
        when = _NO_TEST.get(use["phase"], f"outside any test ({use['phase']})")
        who = words.outside_no_test.format(phase=use["phase"], when=when)
    else:
        who = words.outside.format(phase=use["phase"], test=test)
    return Finding(
        code=DB_OUTSIDE_REQUEST,
        severity="error",
        message=(
            f"{_ran(use, outside=True)} on {use['url']} (engine {use['engine_id']}"
            f"{_created(use)}) outside any request, {who}{origin}{_unseen(use)}"
        ),
        hint=words.outside_fix,
        engine_id=use["engine_id"],
    )


def describe_fixture(fixture: dict[str, Any]) -> str:
    """``session-scoped fixture 'db' (tests/conftest.py:12)``: how messages name a fixture."""
    site = f" ({fixture['site']})" if fixture.get("site") else ""
    return f"{fixture['scope']}-scoped fixture {fixture['name']!r}{site}"


def loop_mismatch(
    where: str, engine: dict[str, Any], detail: str, words: Words = TEST_WORDS
) -> Finding:
    """``LOOP_MISMATCH`` for a pooled async connection checked out on another event loop."""
    return Finding(
        code=LOOP_MISMATCH,
        severity="error",
        message=(
            f"{where}: engine {engine['engine_id']} ({engine['url']}{_created(engine)}): "
            f"{detail}. That driver binds a connection to the loop that opened it; "
            "expect 'attached to a different loop', 'another operation is in progress' "
            "or 'Event loop is closed'"
        ),
        hint=words.loop_fix,
        engine_id=engine["engine_id"],
    )


def not_committed(
    where: str, engine: dict[str, Any], earlier: str, words: Words = TEST_WORDS
) -> Finding:
    """``SESSION_NOT_COMMITTED``: a request reads what an earlier one wrote and rolled back."""
    return Finding(
        code=SESSION_NOT_COMMITTED,
        severity="error",
        message=(
            f"{where} ran statements on engine {engine['engine_id']} ({engine['url']}) "
            f"after {earlier}{words.same_scope} wrote to it and its transaction was rolled "
            f"back without a commit: {words.lost}"
        ),
        hint=words.commit_fix,
        engine_id=engine["engine_id"],
    )


def _ran(use: dict[str, Any], *, outside: bool = False) -> str:
    """``ran 3 statements`` (``3 statements ran`` outside requests), or for a use seen only
    by its pool checkouts, ``checked out 1 connection``."""
    connections = use.get("unobserved_connections")
    if connections and not use["statements"]:
        said = f"{connections} connection" + ("" if connections == 1 else "s")
        return f"{said} checked out" if outside else f"checked out {said}"
    return f"{_count(use['statements'])} ran" if outside else f"ran {_count(use['statements'])}"


def _unseen(use: dict[str, Any]) -> str:
    if not use.get("unobserved_connections") or use["statements"]:
        return ""
    return (
        ". No statement was seen: statements on a raw DBAPI connection (engine.raw_connection(),"
        " pandas, COPY helpers) are not seen one by one, so what it read or wrote is unknown"
    )


def _count(statements: int) -> str:
    return f"{statements} statement" + ("" if statements == 1 else "s")


def _created(db: dict[str, Any]) -> str:
    if db.get("created_at"):
        return f", created at {db['created_at']} during {db['created_phase']}"
    return ", created where depstrace could not see it (before tracing started, or by a driver)"
