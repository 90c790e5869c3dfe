from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.database import Item, get_db

app = FastAPI(title="catalog")


class ItemIn(BaseModel):
    name: str


@app.post("/items", status_code=201)
def create_item(payload: ItemIn, db: Annotated[Session, Depends(get_db)]) -> dict:
    item = Item(name=payload.name)
    db.add(item)
    db.commit()
    return {"id": item.id, "name": item.name}


@app.get("/items")
def list_items(db: Annotated[Session, Depends(get_db)]) -> list:
    return [item.name for item in db.scalars(select(Item).order_by(Item.id))]
