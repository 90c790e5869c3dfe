"""The items API, one fresh app per test."""

from fastapi.testclient import TestClient


def test_create_item(client: TestClient) -> None:
    """POST /items stores the item and returns it."""
    response = client.post("/items", json={"name": "widget"})
    assert response.status_code == 201
    assert response.json()["name"] == "widget"


def test_read_item(client: TestClient) -> None:
    """A created item can be read back by id."""
    created = client.post("/items", json={"name": "gadget"}).json()
    assert client.get(f"/items/{created['id']}").json() == created
