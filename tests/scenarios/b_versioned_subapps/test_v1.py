"""API version 1."""

from fastapi.testclient import TestClient


def test_create_and_list(client: TestClient) -> None:
    """A created item is listed."""
    assert client.post("/v1/items", json={"name": "widget"}).status_code == 201
    assert client.get("/v1/items").json() == ["widget"]
