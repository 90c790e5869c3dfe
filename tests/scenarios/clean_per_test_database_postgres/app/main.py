"""Async routes: every one takes its ``AsyncSession`` from ``Depends(get_db)``."""

from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Item, get_db

app = FastAPI(title="shop")


class ItemIn(BaseModel):
    name: str


@app.post("/items", status_code=201)
async def create_item(
    body: ItemIn, db: Annotated[AsyncSession, Depends(get_db)]
) -> dict[str, object]:
    item = Item(name=body.name)
    db.add(item)
    await db.commit()
    return {"id": item.id, "name": item.name}


@app.get("/items/count")
async def count_items(db: Annotated[AsyncSession, Depends(get_db)]) -> dict[str, int]:
    return {"count": await db.scalar(select(func.count()).select_from(Item)) or 0}
