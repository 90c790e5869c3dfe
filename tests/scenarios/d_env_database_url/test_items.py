def test_create_item(client):
    """Creating an item answers 201 with the new item."""
    response = client.post("/items", json={"name": "apple"})
    assert response.status_code == 201
    assert response.json()["name"] == "apple"


def test_list_items(client):
    """A created item shows up in the listing."""
    client.post("/items", json={"name": "pear"})
    assert "pear" in client.get("/items").json()
