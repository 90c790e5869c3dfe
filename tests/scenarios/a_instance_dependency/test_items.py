"""The items API against the test database."""

from app.db import DATABASE_URL, DBProvider
from app.main import app
from conftest import override_db
from fastapi.testclient import TestClient

# "The same dependency as the routes": same class, same URL, same repr.  FastAPI
# looks overrides up by the object in Depends(), and a new instance is a new key.
app.dependency_overrides[DBProvider(DATABASE_URL)] = override_db


def test_create_item(client: TestClient) -> None:
    """POST /items stores the item and returns it."""
    response = client.post("/items", json={"name": "widget"})
    assert response.status_code == 201
    assert response.json()["name"] == "widget"


def test_list_items(client: TestClient) -> None:
    """GET /items lists stored items."""
    response = client.get("/items")
    assert response.status_code == 200
    assert "widget" in response.json()
