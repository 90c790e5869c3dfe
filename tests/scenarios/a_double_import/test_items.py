"""The items API, run against the test database (so the team believes)."""

from fastapi.testclient import TestClient


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
