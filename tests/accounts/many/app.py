"""Many offenders: every request of 47 tests reaches dev.db through one dependency."""

from collections.abc import Iterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker

engine = sa.create_engine("sqlite:///dev.db")
SessionLocal = sessionmaker(bind=engine)


def get_db() -> Iterator[Session]:
    with SessionLocal() as session:
        yield session


DB = Annotated[Session, Depends(get_db)]
app = FastAPI(title="dev")


@app.get("/items/{item_id}")
def read_item(item_id: int, db: DB) -> int:
    return db.execute(
        sa.text("SELECT count(*) FROM items WHERE id = :id"), {"id": item_id}
    ).scalar_one()


@app.get("/items")
def list_items(db: DB) -> int:
    return db.execute(sa.text("SELECT count(*) FROM items")).scalar_one()


@app.post("/items", status_code=201)
def create_item(db: DB) -> None:
    db.execute(sa.text("INSERT INTO items (name) VALUES ('x')"))
    db.commit()
