from fastapi.testclient import TestClient


def test_create_item(client: TestClient) -> None:
    """Creating an item returns it with an id."""
    response = client.post("/items", json={"name": "mug", "price": 9.5})
    assert response.status_code == 201
    assert response.json() == {"id": 1, "name": "mug", "price": 9.5}


def test_list_items(client: TestClient) -> None:
    """Listing items returns exactly what this test created."""
    for name in ("pen", "ink"):
        client.post("/items", json={"name": name, "price": 2.0})
    response = client.get("/items")
    assert response.status_code == 200
    assert [item["name"] for item in response.json()] == ["pen", "ink"]


def test_get_item(client: TestClient) -> None:
    """An item can be fetched back by its id."""
    item_id = client.post("/items", json={"name": "lamp", "price": 30.0}).json()["id"]
    response = client.get(f"/items/{item_id}")
    assert response.status_code == 200
    assert response.json()["name"] == "lamp"


def test_get_missing_item(client: TestClient) -> None:
    """An unknown id is a 404."""
    assert client.get("/items/999").status_code == 404
