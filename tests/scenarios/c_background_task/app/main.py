from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import write_audit
from app.database import AuditEntry, Order, get_db

app = FastAPI(title="shop")


class OrderIn(BaseModel):
    product: str


@app.post("/orders", status_code=201)
def create_order(
    payload: OrderIn, background_tasks: BackgroundTasks, db: Annotated[Session, Depends(get_db)]
) -> dict:
    order = Order(product=payload.product)
    db.add(order)
    db.commit()
    background_tasks.add_task(write_audit, f"order {order.id}: {order.product}")
    return {"id": order.id, "product": order.product}


@app.get("/orders")
def list_orders(db: Annotated[Session, Depends(get_db)]) -> list:
    return [order.product for order in db.scalars(select(Order).order_by(Order.id))]


@app.get("/audit")
def list_audit(db: Annotated[Session, Depends(get_db)]) -> list:
    return [entry.action for entry in db.scalars(select(AuditEntry).order_by(AuditEntry.id))]
