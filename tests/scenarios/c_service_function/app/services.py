"""Business logic shared by the API and the nightly report script."""

from sqlalchemy import func, select

from app.database import SessionLocal, Ticket


def count_open_tickets() -> int:
    # Written for the report script, which has no request and no Depends: it opens
    # its own session. Called from a route, it escapes the tests' get_db override.
    with SessionLocal() as db:
        return db.scalar(select(func.count()).select_from(Ticket).where(Ticket.open))
