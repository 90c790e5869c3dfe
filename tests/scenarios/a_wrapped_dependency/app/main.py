"""Routes: the session comes from ``get_db`` wrapped in ``timed``."""

from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import Item
from app.deps import get_db
from app.observability import timed

app = FastAPI(title="shop")

# functools.wraps copies __name__, __qualname__ and __module__: in tracebacks and
# in the OpenAPI schema this looks exactly like app.deps.get_db, but it is
# another function object, and that is what Depends() holds.
timed_db = timed(get_db)


class ItemIn(BaseModel):
    name: str


@app.post("/items", status_code=201)
def create_item(body: ItemIn, db: Annotated[Session, Depends(timed_db)]) -> dict[str, object]:
    item = Item(name=body.name)
    db.add(item)
    db.commit()
    return {"id": item.id, "name": item.name}


@app.get("/items/count")
def count_items(db: Annotated[Session, Depends(timed_db)]) -> dict[str, int]:
    return {"count": len(db.scalars(select(Item.id)).all())}
