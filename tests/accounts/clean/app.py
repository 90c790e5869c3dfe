"""A clean suite: every request, one made in a session fixture, on test.db."""

from collections.abc import Iterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker

engine = sa.create_engine("sqlite:///prod.db")
SessionLocal = sessionmaker(bind=engine)


def get_db() -> Iterator[Session]:
    with SessionLocal() as session:
        yield session


app = FastAPI(title="shop")


@app.get("/items")
def list_items(db: Annotated[Session, Depends(get_db)]) -> int:
    return db.execute(sa.text("SELECT count(*) FROM items")).scalar_one()


@app.post("/items", status_code=201)
def create_item(db: Annotated[Session, Depends(get_db)]) -> None:
    db.execute(sa.text("INSERT INTO items (name) VALUES ('x')"))
    db.commit()
