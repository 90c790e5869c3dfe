"""Database access: one engine per URL, a session provider per URL."""

import functools
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

DATABASE_URL = f"sqlite:///{Path(os.environ['SCENARIO_DATA']) / 'prod.db'}"


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


@functools.lru_cache
def engine_for(url: str) -> Engine:
    return create_engine(url)


class DBProvider:
    """A dependency that yields a session on the database at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:
        return f"DBProvider({self.url!r})"

    def __call__(self) -> Iterator[Session]:
        with Session(engine_for(self.url)) as session:
            yield session
