from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.database import Book, get_db

app = FastAPI(title="library")


class BookIn(BaseModel):
    title: str


@app.get("/books")
def list_books(db: Annotated[Session, Depends(get_db)]) -> list:
    return [book.title for book in db.scalars(select(Book).order_by(Book.id))]


@app.post("/books", status_code=201)
def add_book(payload: BookIn, db: Annotated[Session, Depends(get_db)]) -> dict:
    book = Book(title=payload.title)
    db.add(book)
    db.commit()
    return {"id": book.id, "title": book.title}
