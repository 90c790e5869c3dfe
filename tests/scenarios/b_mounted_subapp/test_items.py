"""The public items API."""

from fastapi.testclient import TestClient


def test_create_and_list(client: TestClient) -> None:
    """A created item is listed."""
    assert client.post("/items", json={"name": "widget"}).status_code == 201
    assert client.get("/items").json() == ["widget"]
