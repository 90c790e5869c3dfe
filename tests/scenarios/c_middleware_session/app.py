"""A notes API with the "database session in a middleware" pattern from older FastAPI docs.

Writes take the session from ``Depends(get_db)``; the listing, written later, reads
``request.state.db``, the session the middleware opened from the module-level factory.
"""

import os
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel
from sqlalchemy import create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

engine = create_engine(
    f"sqlite:///{os.environ['SCENARIO_DATA']}/prod.db", connect_args={"check_same_thread": False}
)
SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]


app = FastAPI(title="notes")


@app.middleware("http")
async def db_session_middleware(request: Request, call_next):
    request.state.db = SessionLocal()
    try:
        return await call_next(request)
    finally:
        request.state.db.close()


def get_db() -> Iterator[Session]:
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


class NoteIn(BaseModel):
    text: str


@app.post("/notes", status_code=201)
def create_note(payload: NoteIn, db: Annotated[Session, Depends(get_db)]) -> dict:
    note = Note(text=payload.text)
    db.add(note)
    db.commit()
    return {"id": note.id, "text": note.text}


@app.get("/notes")
def list_notes(request: Request) -> list:
    db: Session = request.state.db  # the bug: the middleware's session, not Depends(get_db)
    return [note.text for note in db.scalars(select(Note).order_by(Note.id))]
