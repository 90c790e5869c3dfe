"""Request dependencies."""

from collections.abc import Iterator

from db import SessionLocal
from sqlalchemy.orm import Session


def get_db() -> Iterator[Session]:
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()
