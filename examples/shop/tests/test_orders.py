from fastapi.testclient import TestClient


def test_create_order(client: TestClient) -> None:
    """Ordering an existing item returns 201 and the order."""
    item_id = client.post("/items", json={"name": "chair", "price": 45.0}).json()["id"]
    response = client.post("/orders", json={"item_id": item_id, "quantity": 2})
    assert response.status_code == 201
    assert response.json()["quantity"] == 2


def test_order_unknown_item(client: TestClient) -> None:
    """Ordering an item that does not exist is a 404."""
    assert client.post("/orders", json={"item_id": 999}).status_code == 404
