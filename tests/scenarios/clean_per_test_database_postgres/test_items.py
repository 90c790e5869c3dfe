"""The items API, each test on a database of its own."""

from fastapi.testclient import TestClient


def test_create_item(client: TestClient) -> None:
    """POST /items stores the item and returns it."""
    response = client.post("/items", json={"name": "widget"})
    assert response.status_code == 201
    assert response.json() == {"id": 1, "name": "widget"}


def test_count_starts_at_zero(client: TestClient) -> None:
    """A new database holds no items."""
    assert client.get("/items/count").json() == {"count": 0}


def test_count_after_create(client: TestClient) -> None:
    """Created items are counted."""
    client.post("/items", json={"name": "widget"})
    client.post("/items", json={"name": "gadget"})
    assert client.get("/items/count").json() == {"count": 2}
