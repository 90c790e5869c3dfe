"""The shop API. Three routes quietly escape dependency injection; see README.md."""

from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shop.db import AuditEntry, Item, Order, SessionLocal, get_db

DB = Annotated[AsyncSession, Depends(get_db)]


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    price: float = Field(ge=0)


class ItemOut(ItemIn):
    model_config = ConfigDict(from_attributes=True)

    id: int


class OrderIn(BaseModel):
    item_id: int
    quantity: int = Field(default=1, ge=1)


class OrderOut(OrderIn):
    model_config = ConfigDict(from_attributes=True)

    id: int


app = FastAPI(title="shop")


@app.get("/items", response_model=list[ItemOut])
async def list_items(db: DB) -> list[Item]:
    return list(await db.scalars(select(Item).order_by(Item.id)))


@app.post("/items", response_model=ItemOut, status_code=status.HTTP_201_CREATED)
async def create_item(payload: ItemIn, db: DB) -> Item:
    item = Item(name=payload.name, price=payload.price)
    db.add(item)
    await db.commit()
    return item


@app.get("/items/{item_id}", response_model=ItemOut)
async def get_item(item_id: int, db: DB) -> Item:
    item = await db.get(Item, item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "item not found")
    return item


@app.get("/stats")
async def stats() -> dict[str, int]:
    # BUG (escape 1): opens a session from the module-level factory instead of
    # taking ``db: DB``, so no dependency override can ever redirect it.
    async with SessionLocal() as session:
        count = await session.scalar(select(func.count()).select_from(Item))
    return {"items": count or 0}


async def write_audit(action: str, detail: str) -> None:
    # BUG (escape 2): runs after the response, outside the request's dependencies,
    # and uses the module-level factory, i.e. the production engine.
    async with SessionLocal() as session:
        session.add(AuditEntry(action=action, detail=detail))
        await session.commit()


@app.post("/orders", response_model=OrderOut, status_code=status.HTTP_201_CREATED)
async def create_order(payload: OrderIn, db: DB, background_tasks: BackgroundTasks) -> Order:
    if await db.get(Item, payload.item_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "item not found")
    order = Order(item_id=payload.item_id, quantity=payload.quantity)
    db.add(order)
    await db.commit()
    background_tasks.add_task(
        write_audit, "order.created", f"order {order.id}: {order.quantity} x item {order.item_id}"
    )
    return order


# BUG (escape 3): a separate FastAPI app mounted under /admin. It has its own
# ``dependency_overrides``; overrides set on ``app`` are never consulted here.
admin = FastAPI(title="shop-admin")


@admin.get("/report")
async def report(db: DB) -> dict[str, int]:
    items = await db.scalar(select(func.count()).select_from(Item))
    orders = await db.scalar(select(func.count()).select_from(Order))
    return {"items": items or 0, "orders": orders or 0}


app.mount("/admin", admin)
