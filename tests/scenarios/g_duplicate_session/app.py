"""A notes API with scoped permissions: every data access declares the scope it needs.

get_current_user reads the users table through ``Security(get_db, scopes=["users:read"])``;
the route saves the note through a plain ``Depends(get_db)``. FastAPI caches a dependency
per (callable, security scopes), so the two are different cache entries and the request
opens two sessions: the user is loaded in one and the note is saved in the other.
"""

import os
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Security
from fastapi.security import SecurityScopes
from pydantic import BaseModel
from sqlalchemy import ForeignKey, create_engine, select
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

engine = create_engine(
    f"sqlite:///{os.environ['SCENARIO_DATA']}/prod.db", connect_args={"check_same_thread": False}
)
SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    scopes: Mapped[str]  # space-separated


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    author: Mapped[User | None] = relationship()


def get_db() -> Iterator[Session]:
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


def get_current_user(
    security_scopes: SecurityScopes,
    x_user: Annotated[str, Header()],
    db: Annotated[Session, Security(get_db, scopes=["users:read"])],
) -> User:
    user = db.scalar(select(User).where(User.name == x_user))
    if user is None:
        raise HTTPException(status_code=401, detail="unknown user")
    if not set(security_scopes.scopes) <= set(user.scopes.split()):
        raise HTTPException(status_code=403, detail="missing scope")
    return user


app = FastAPI(title="notes")


class NoteIn(BaseModel):
    text: str


@app.get("/notes")
def list_notes(db: Annotated[Session, Depends(get_db)]) -> list:
    return [note.text for note in db.scalars(select(Note).order_by(Note.id))]


@app.post("/notes", status_code=201)
def create_note(
    payload: NoteIn,
    user: Annotated[User, Security(get_current_user, scopes=["notes:write"])],
    db: Annotated[Session, Depends(get_db)],
) -> dict:
    note = Note(text=payload.text, author=user)
    db.add(note)
    db.commit()
    return {"id": note.id, "text": note.text, "author": user.name}
