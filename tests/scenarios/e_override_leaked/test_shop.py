"""Creating items (passes alone, fails after test_maintenance.py)."""

from fastapi.testclient import TestClient


def test_create_item(client: TestClient) -> None:
    """POST /items stores the item and returns it."""
    response = client.post("/items", json={"name": "widget"})
    assert response.status_code == 201
    assert response.json()["name"] == "widget"
