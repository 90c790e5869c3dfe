def test_create_item(client):
    """Creating an item answers 201 with the new item."""
    response = client.post("/items", json={"name": "apple"})
    assert response.status_code == 201
    assert response.json()["name"] == "apple"


def test_list_items(client):
    """The listing shows exactly the item created in this test."""
    client.post("/items", json={"name": "pear"})
    assert client.get("/items").json() == ["pear"]
