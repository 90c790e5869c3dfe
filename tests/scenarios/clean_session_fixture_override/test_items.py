"""Creating and reading items."""

from fastapi.testclient import TestClient


def test_create_and_read(client: TestClient) -> None:
    """A created item can be read back by id."""
    created = client.post("/items", json={"name": "widget"})
    assert created.status_code == 201
    assert client.get(f"/items/{created.json()['id']}").json() == created.json()


def test_missing_item(client: TestClient) -> None:
    """An unknown id is a 404."""
    assert client.get("/items/999").status_code == 404
