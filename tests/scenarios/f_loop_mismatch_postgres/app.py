"""A product API on asyncpg with one module-level async engine and its connection pool.

Pooled asyncpg connections belong to the event loop that opened them. Under
TestClient every ``with TestClient(app)`` block runs the app on a new event loop,
so the second test checks out a connection that the first test's loop opened.
"""

import os
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+asyncpg://localhost/shop")

engine = create_async_engine(DATABASE_URL)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


async def get_db() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as db:
        yield db


app = FastAPI(title="products")


class ProductIn(BaseModel):
    name: str


@app.post("/products", status_code=201)
async def create_product(payload: ProductIn, db: Annotated[AsyncSession, Depends(get_db)]) -> dict:
    product = Product(name=payload.name)
    db.add(product)
    await db.commit()
    return {"id": product.id, "name": product.name}


@app.get("/products")
async def list_products(db: Annotated[AsyncSession, Depends(get_db)]) -> list:
    return list(await db.scalars(select(Product.name).order_by(Product.id)))
