"""A blog API whose lifespan makes sure the default categories exist."""

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

engine = create_engine(
    f"sqlite:///{os.environ['SCENARIO_DATA']}/prod.db", connect_args={"check_same_thread": False}
)
SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)

DEFAULT_CATEGORIES = ("general", "news")


class Base(DeclarativeBase):
    pass


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The bug: startup has no Depends, so it seeds through the module-level factory,
    # whatever the tests did to app.dependency_overrides.
    with SessionLocal() as db:
        existing = set(db.scalars(select(Category.name)))
        db.add_all(Category(name=name) for name in DEFAULT_CATEGORIES if name not in existing)
        db.commit()
    yield


app = FastAPI(title="blog", lifespan=lifespan)


def get_db() -> Iterator[Session]:
    with SessionLocal() as db:
        yield db


class CategoryIn(BaseModel):
    name: str


@app.get("/categories")
def list_categories(db: Annotated[Session, Depends(get_db)]) -> list:
    return [category.name for category in db.scalars(select(Category).order_by(Category.id))]


@app.post("/categories", status_code=201)
def create_category(payload: CategoryIn, db: Annotated[Session, Depends(get_db)]) -> dict:
    category = Category(name=payload.name)
    db.add(category)
    db.commit()
    return {"id": category.id, "name": category.name}
