"""Routes call the service layer; writes are audited in a background task."""

from fastapi import BackgroundTasks, FastAPI
from pydantic import BaseModel

from app import services

app = FastAPI(title="shop")


class ItemIn(BaseModel):
    name: str


@app.post("/items", status_code=201)
def create_item(body: ItemIn, background: BackgroundTasks) -> dict[str, object]:
    item = services.create_item(body.name)
    background.add_task(services.audit, f"created item {item['id']}")
    return item


@app.get("/items")
def list_items() -> list[str]:
    return services.item_names()
