"""Versioned API: each version is its own FastAPI app built by ``make_version_app``."""

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import Item
from app.deps import get_db


class ItemIn(BaseModel):
    name: str


v1 = APIRouter()


@v1.post("/items", status_code=201)
def create_item_v1(body: ItemIn, db: Annotated[Session, Depends(get_db)]) -> dict[str, object]:
    item = Item(name=body.name)
    db.add(item)
    db.commit()
    return {"id": item.id, "name": item.name}


@v1.get("/items")
def list_items_v1(db: Annotated[Session, Depends(get_db)]) -> list[str]:
    return list(db.scalars(select(Item.name).order_by(Item.id)))


v2 = APIRouter()


@v2.post("/items", status_code=201)
def create_item_v2(body: ItemIn, db: Annotated[Session, Depends(get_db)]) -> dict[str, object]:
    item = Item(name=body.name)
    db.add(item)
    db.commit()
    return {"item": {"id": item.id, "name": item.name}, "version": "v2"}


ROUTERS = {"v1": v1, "v2": v2}


def make_version_app(version: str) -> FastAPI:
    api = FastAPI(title=f"shop {version}")
    api.include_router(ROUTERS[version])
    return api


app = FastAPI(title="shop")
version_apps = {version: make_version_app(version) for version in ROUTERS}
for version, api in version_apps.items():
    app.mount(f"/{version}", api)
