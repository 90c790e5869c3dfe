"""The inventory API: every route takes get_db, except the count, which predates it."""

from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.database import SessionLocal, get_db
from app.models import Item

app = FastAPI(title="inventory")


class ItemIn(BaseModel):
    name: str


@app.post("/items", status_code=201)
def create_item(payload: ItemIn, db: Annotated[Session, Depends(get_db)]) -> dict:
    item = Item(name=payload.name)
    db.add(item)
    db.commit()
    return {"id": item.id, "name": item.name}


@app.get("/items/count")
def count_items() -> dict:
    # The bug: a session from the module-level factory, not from Depends(get_db),
    # so app.dependency_overrides[get_db] never reaches it.
    with SessionLocal() as db:
        return {"count": db.scalar(select(func.count()).select_from(Item))}
