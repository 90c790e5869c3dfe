"""Routes: writes are refused while the shop is in maintenance mode."""

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.db import Item
from app.deps import Settings, get_db, get_settings

app = FastAPI(title="shop")


class ItemIn(BaseModel):
    name: str


@app.post("/items", status_code=201)
def create_item(
    body: ItemIn,
    settings: Annotated[Settings, Depends(get_settings)],
    db: Annotated[Session, Depends(get_db)],
) -> dict[str, object]:
    if settings.maintenance_mode:
        raise HTTPException(503, "the shop is in maintenance mode")
    item = Item(name=body.name)
    db.add(item)
    db.commit()
    return {"id": item.id, "name": item.name}
