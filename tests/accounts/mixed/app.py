"""A mixed suite: clean requests, two bypasses, a mounted app, fixtures on prod.db."""

from collections.abc import Iterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import BackgroundTasks, Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker

engine = sa.create_engine("sqlite:///prod.db")
SessionLocal = sessionmaker(bind=engine)


def get_db() -> Iterator[Session]:
    with SessionLocal() as session:
        yield session


DB = Annotated[Session, Depends(get_db)]
app = FastAPI(title="shop")


@app.get("/items")
def list_items(db: DB) -> int:
    return db.execute(sa.text("SELECT count(*) FROM items")).scalar_one()


def audit() -> None:
    with SessionLocal() as session:  # escapes Depends: always prod.db
        session.execute(sa.text("INSERT INTO audit (action) VALUES ('order')"))
        session.execute(sa.text("UPDATE items SET name = name"))
        session.commit()


@app.post("/orders", status_code=201)
def create_order(db: DB, tasks: BackgroundTasks) -> None:
    db.execute(sa.text("INSERT INTO items (name) VALUES ('order')"))
    db.commit()
    tasks.add_task(audit)


@app.get("/stats")
def stats() -> int:
    with SessionLocal() as session:  # escapes Depends: always prod.db
        return session.execute(sa.text("SELECT count(*) FROM items")).scalar_one()


admin = FastAPI(title="admin")


@admin.get("/report")
def report(db: DB) -> int:
    return db.execute(sa.text("SELECT count(*) FROM items")).scalar_one()


app.mount("/admin", admin)
