"""Async routes: every one takes its ``AsyncSession`` from ``Depends(get_db)``."""

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import select
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


@app.get("/items")
async def list_items(db: Annotated[AsyncSession, Depends(get_db)]) -> list[str]:
    return list(await db.scalars(select(Item.name).order_by(Item.id)))


@app.get("/items/{item_id}")
async def read_item(
    item_id: int, db: Annotated[AsyncSession, Depends(get_db)]
) -> dict[str, object]:
    item = await db.get(Item, item_id)
    if item is None:
        raise HTTPException(404, "no such item")
    return {"id": item.id, "name": item.name}
