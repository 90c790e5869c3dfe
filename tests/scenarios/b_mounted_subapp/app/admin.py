"""The admin API: its own FastAPI app, mounted by ``app.main`` under ``/admin``."""

from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import Item
from app.deps import get_db

admin_app = FastAPI(title="shop-admin")


@admin_app.get("/stats")
def stats(db: Annotated[Session, Depends(get_db)]) -> dict[str, int]:
    return {"items": db.scalar(select(func.count()).select_from(Item)) or 0}
