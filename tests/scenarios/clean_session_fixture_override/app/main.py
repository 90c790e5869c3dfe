"""Routes: every one takes its session from ``Depends(get_db)``."""

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import Item
from app.deps import get_db

app = FastAPI(title="shop")


class ItemIn(BaseModel):
    name: str


@app.post("/items", status_code=201)
def create_item(body: ItemIn, db: Annotated[Session, Depends(get_db)]) -> dict[str, object]:
    item = Item(name=body.name)
    db.add(item)
    db.commit()
    return {"id": item.id, "name": item.name}


@app.get("/items")
def list_items(db: Annotated[Session, Depends(get_db)]) -> list[str]:
    return list(db.scalars(select(Item.name).order_by(Item.id)))


@app.get("/items/{item_id}")
def read_item(item_id: int, db: Annotated[Session, Depends(get_db)]) -> dict[str, object]:
    item = db.get(Item, item_id)
    if item is None:
        raise HTTPException(404, "no such item")
    return {"id": item.id, "name": item.name}
