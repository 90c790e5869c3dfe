"""The public API; the admin API is mounted under ``/admin``."""

from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin import admin_app
from app.db import Item
from app.deps import get_db

app = FastAPI(title="shop")
app.mount("/admin", admin_app)


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
