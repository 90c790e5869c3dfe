"""Request dependencies."""

from collections.abc import Iterator

from sqlalchemy.orm import Session

from app.db import SessionLocal


def get_session() -> Iterator[Session]:
    """The first session dependency; no route uses it since get_db replaced it."""
    with SessionLocal() as session:
        yield session


def get_db() -> Iterator[Session]:
    """A session that commits when the request succeeds and rolls back otherwise."""
    with SessionLocal() as session, session.begin():
        yield session
