"""Rules that turn what a request did into findings with a code, message and hint.

Codes are stable (users search for them in Jaeger and grep for them in CI
logs); the list lives in DESIGN.md §2 and docs/format.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from depstrace._names import callable_label, via_node

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

# Computed from the request record alone by :func:`request_findings`; the others
# are found while the request runs and kept as they are when a record is re-judged.
RECORD_CODES = frozenset({WRONG_DB, DI_BYPASS, ENGINE_FROM_ENV, DUPLICATE_SESSION})

DOCS = "docs/findings/{code}.md"


_BYPASS_HINT = (
    "Take the session from a dependency (Depends(get_db)) and pass it on instead of "
    "opening it from a module-level engine, or point that engine at the test database "
    "in a fixture."
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


def request_findings(request: dict[str, Any]) -> list[Finding]:
    """Findings computed from one closed request dict whose databases carry ``is_test``."""
    findings: list[Finding] = []
    where = f"{request['method']} {request['path']}"
    nodes = {node["id"]: node for node in request["dependencies"]}
    for db in request["databases"]:
        if db["is_test"]:
            continue
        findings.append(_wrong_db(where, db, via_node(db, nodes)))
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
                    hint=_BYPASS_HINT,
                    engine_id=db["engine_id"],
                )
            )
        if db.get("env_vars"):
            findings.append(_from_env(where, db))
    findings.extend(_duplicate_sessions(where, request["dependencies"]))
    return findings


def _wrong_db(where: str, db: dict[str, Any], via: dict[str, Any] | None) -> Finding:
    engine = f"engine {db['engine_id']}{_created(db)}"
    if db["via"] is not None:
        # Named so the name finds the object the route used (a wrapper is not
        # the function whose name it carries).
        resolved = callable_label(via, "resolved", inline=True) if via else db["via_callable"]
        original = callable_label(via, "original") if via else db["via_original"]
        provider = f"through dependency {db['via']!r} ({resolved})"
        hint = (
            f"Override {original} on the app that serves {where}, or build "
            "its engine from the test configuration; if this database is in fact a "
            "test database, say so with DEPSTRACE_TEST_DB."
        )
    else:
        provider = "through no dependency of this request"
        hint = _BYPASS_HINT
    early = ""
    if db["via"] is not None and db.get("created_phase") in ("import", "startup", "collection"):
        early = (
            f". The engine was built at {db['created_phase']} time, before any fixture "
            "could apply the test configuration: create it lazily (a cached factory) or "
            "from settings read in a fixture"
        )
    return Finding(
        code=WRONG_DB,
        severity="error",
        message=(
            f"{where} ran {_count(db['statements'])} on {db['url']} ({engine}) "
            f"{provider}; it is not a test database{early}"
        ),
        hint=hint,
        engine_id=db["engine_id"],
    )


def _from_env(where: str, db: dict[str, Any]) -> Finding:
    names = ", ".join(f"${name}" for name in db["env_vars"])
    return Finding(
        code=ENGINE_FROM_ENV,
        severity="error",
        message=(
            f"{where}: engine {db['engine_id']} ({db['url']}{_created(db)}) was built from "
            f"the environment: {names} holds exactly this URL (value not shown). An exported "
            "variable (a CI secret, a .env file, the shell) won over the test configuration"
        ),
        hint=(
            f"Unset or override {names} for the test run (monkeypatch.setenv in a "
            "conftest before the settings are built, or set it in pytest's env), and "
            "build settings and engines after the test configuration is applied."
        ),
        engine_id=db["engine_id"],
    )


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


def outside_request(use: dict[str, Any]) -> Finding:
    """``DB_OUTSIDE_REQUEST`` for statements on a non-test engine outside any request."""
    test = use["test"] or "no test"
    origin = f" Reached from {use['origin']}." if use.get("origin") else ""
    return Finding(
        code=DB_OUTSIDE_REQUEST,
        severity="error",
        message=(
            f"{_count(use['statements'])} ran on {use['url']} (engine {use['engine_id']}"
            f"{_created(use)}) outside any request, during the {use['phase']} phase of "
            f"{test}: a fixture, the app's lifespan/startup or a thread used a non-test "
            f"database directly.{origin}"
        ),
        hint=(
            "Point the engine used by fixtures and startup code at the test database "
            "(the same override the routes get), or create it from the test configuration."
        ),
        engine_id=use["engine_id"],
    )


def loop_mismatch(where: str, engine: dict[str, Any], detail: str) -> Finding:
    """``LOOP_MISMATCH`` for a pooled async connection checked out on another event loop."""
    return Finding(
        code=LOOP_MISMATCH,
        severity="error",
        message=(
            f"{where}: engine {engine['engine_id']} ({engine['url']}{_created(engine)}): "
            f"{detail}. Async drivers bind connections to the loop that created them; "
            "expect 'attached to a different loop' or 'another operation is in progress'"
        ),
        hint=(
            "Create the async engine per event loop (in a fixture or the app's lifespan) "
            "or use poolclass=NullPool in tests, and dispose it when its loop ends; keep "
            "one TestClient (one loop) per engine."
        ),
        engine_id=engine["engine_id"],
    )


def not_committed(where: str, engine: dict[str, Any], earlier: str) -> Finding:
    """``SESSION_NOT_COMMITTED``: a request reads what an earlier one wrote and rolled back."""
    return Finding(
        code=SESSION_NOT_COMMITTED,
        severity="error",
        message=(
            f"{where} ran statements on engine {engine['engine_id']} ({engine['url']}) "
            f"after {earlier} of the same test wrote to it and its transaction was rolled "
            "back without a commit: the data the test expects to persist was never saved"
        ),
        hint=(
            "Commit in the route or in the session dependency after a successful yield "
            "(session.commit()), or use a rollback fixture that joins the test's outer "
            "transaction (join_transaction_mode='create_savepoint')."
        ),
        engine_id=engine["engine_id"],
    )


def _count(statements: int) -> str:
    return f"{statements} statement" + ("" if statements == 1 else "s")


def _created(db: dict[str, Any]) -> str:
    if db.get("created_at"):
        return f", created at {db['created_at']} during {db['created_phase']}"
    return ", created where depstrace could not see it (before tracing started, or by a driver)"
