"""Routes: each builds its session dependency inline, ``Depends(DBProvider(...))``."""

from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import DATABASE_URL, DBProvider, Item

app = FastAPI(title="shop")


class ItemIn(BaseModel):
    name: str


@app.post("/items", status_code=201)
def create_item(
    body: ItemIn, db: Annotated[Session, Depends(DBProvider(DATABASE_URL))]
) -> dict[str, object]:
    item = Item(name=body.name)
    db.add(item)
    db.commit()
    return {"id": item.id, "name": item.name}


@app.get("/items")
def list_items(db: Annotated[Session, Depends(DBProvider(DATABASE_URL))]) -> list[str]:
    return list(db.scalars(select(Item.name).order_by(Item.id)))
