"""API version 2: items come back wrapped, with the version."""

from fastapi.testclient import TestClient


def test_create_item(client: TestClient) -> None:
    """POST /v2/items returns the wrapped item."""
    response = client.post("/v2/items", json={"name": "gadget"})
    assert response.status_code == 201
    assert response.json()["item"]["name"] == "gadget"
    assert response.json()["version"] == "v2"
