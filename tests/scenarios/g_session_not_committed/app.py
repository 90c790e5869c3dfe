"""A todo API. get_db hands out a session and closes it; committing is the route's job."""

import os
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

engine = create_engine(
    f"sqlite:///{os.environ['SCENARIO_DATA']}/prod.db", connect_args={"check_same_thread": False}
)
SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)


class Base(DeclarativeBase):
    pass


class Todo(Base):
    __tablename__ = "todos"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]


def get_db() -> Iterator[Session]:
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()  # rolls back whatever was not committed


app = FastAPI(title="todos")


class TodoIn(BaseModel):
    title: str


@app.post("/todos", status_code=201)
def create_todo(payload: TodoIn, db: Annotated[Session, Depends(get_db)]) -> dict:
    todo = Todo(title=payload.title)
    db.add(todo)
    db.flush()  # the bug: flush sends the INSERT and assigns the id, but nothing commits
    return {"id": todo.id, "title": todo.title}


@app.get("/todos")
def list_todos(db: Annotated[Session, Depends(get_db)]) -> list:
    return [todo.title for todo in db.scalars(select(Todo).order_by(Todo.id))]
