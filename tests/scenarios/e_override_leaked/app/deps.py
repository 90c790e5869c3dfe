"""Request dependencies: settings and the database session."""

import os
from collections.abc import Iterator

from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.db import SessionLocal


class Settings(BaseModel):
    maintenance_mode: bool = False


def get_settings() -> Settings:
    return Settings(maintenance_mode=os.environ.get("SHOP_MAINTENANCE") == "1")


def get_db() -> Iterator[Session]:
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()
