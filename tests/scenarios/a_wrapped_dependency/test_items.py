"""The items API against the test database: get_db is overridden right here."""

from app.deps import get_db
from app.main import app
from conftest import override_get_db
from fastapi.testclient import TestClient

app.dependency_overrides[get_db] = override_get_db


def test_create_item(client: TestClient) -> None:
    """POST /items stores the item and returns it."""
    response = client.post("/items", json={"name": "widget"})
    assert response.status_code == 201
    assert response.json()["name"] == "widget"


def test_count_items(client: TestClient) -> None:
    """GET /items/count counts the items of this test (the database starts empty)."""
    client.post("/items", json={"name": "gadget"})
    response = client.get("/items/count")
    assert response.status_code == 200
    assert response.json()["count"] == 1
