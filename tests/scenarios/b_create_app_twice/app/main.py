"""The application factory; ``app`` is the instance uvicorn serves (``app.main:app``)."""

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.db import Item
from app.deps import get_db

router = APIRouter()


class ItemIn(BaseModel):
    name: str


@router.post("/items", status_code=201)
def create_item(body: ItemIn, db: Annotated[Session, Depends(get_db)]) -> dict[str, object]:
    item = Item(name=body.name)
    db.add(item)
    db.commit()
    return {"id": item.id, "name": item.name}


@router.get("/items/{item_id}")
def read_item(item_id: int, db: Annotated[Session, Depends(get_db)]) -> dict[str, object]:
    item = db.get(Item, item_id)
    return {"id": item_id, "name": item.name if item else None}


def create_app() -> FastAPI:
    app = FastAPI(title="shop")
    app.include_router(router)
    return app


app = create_app()
