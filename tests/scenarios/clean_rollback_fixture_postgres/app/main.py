"""Routes that commit on success and roll back on a duplicate name."""

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import Item, get_db

app = FastAPI(title="shop")


class ItemIn(BaseModel):
    name: str


@app.post("/items", status_code=201)
def create_item(body: ItemIn, db: Annotated[Session, Depends(get_db)]) -> dict[str, object]:
    item = Item(name=body.name)
    db.add(item)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise HTTPException(409, "an item with this name exists") from None
    return {"id": item.id, "name": item.name}


@app.get("/items")
def list_items(db: Annotated[Session, Depends(get_db)]) -> list[str]:
    return list(db.scalars(select(Item.name).order_by(Item.id)))
