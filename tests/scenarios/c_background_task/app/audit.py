"""Audit trail, written after the response so it never slows a request down."""

from app.database import AuditEntry, SessionLocal


def write_audit(action: str) -> None:
    # The bug: a background task has no Depends, so it opens its own session from
    # the module-level factory, which the tests' override of get_db never touches.
    with SessionLocal() as db:
        db.add(AuditEntry(action=action))
        db.commit()
