"""Rules that turn what a request did into findings with a code, message and hint.

Codes are stable (users search for them in Jaeger and grep for them in CI
logs); the list lives in DESIGN.md §2 and docs/format.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WRONG_DB = "WRONG_DB"
DI_BYPASS = "DI_BYPASS"


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
    """Findings for one closed request dict whose databases carry ``is_test``."""
    findings: list[Finding] = []
    where = f"{request['method']} {request['path']}"
    for db in request["databases"]:
        if db["is_test"]:
            continue
        engine = f"engine {db['engine_id']}{_created(db)}"
        if db["via"] is not None:
            provider = f"through dependency {db['via']!r} ({db['via_callable']})"
            hint = (
                f"Override {db['via_original']} on the app that serves {where}, or build "
                "its engine from the test configuration; if this database is in fact a "
                "test database, say so with DEPSTRACE_TEST_DB."
            )
        else:
            provider = "through no dependency of this request"
            hint = _BYPASS_HINT
        findings.append(
            Finding(
                code=WRONG_DB,
                severity="error",
                message=(
                    f"{where} ran {_count(db['statements'])} on {db['url']} ({engine}) "
                    f"{provider}; it is not a test database"
                ),
                hint=hint,
                engine_id=db["engine_id"],
            )
        )
        if db["via"] is None:
            findings.append(
                Finding(
                    code=DI_BYPASS,
                    severity="error",
                    message=(
                        f"{where} used {engine} ({db['url']}) although no dependency of the "
                        "request provided it: the session was opened outside Depends (a "
                        "module-level SessionLocal, a middleware, a service or a background "
                        "task), so app.dependency_overrides cannot replace it"
                    ),
                    hint=_BYPASS_HINT,
                    engine_id=db["engine_id"],
                )
            )
    return findings


def _count(statements: int) -> str:
    return f"{statements} statement" + ("" if statements == 1 else "s")


def _created(db: dict[str, Any]) -> str:
    if db.get("created_at"):
        return f", created at {db['created_at']} during {db['created_phase']}"
    return ", created before depstrace was enabled"
