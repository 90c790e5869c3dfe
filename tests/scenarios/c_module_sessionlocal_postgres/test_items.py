def test_create_item(client):
    """Creating an item answers 201 with the new item."""
    response = client.post("/items", json={"name": "apple"})
    assert response.status_code == 201
    assert response.json()["name"] == "apple"


def test_count_items(client):
    """The count includes the items just created, and nothing else."""
    for name in ("apple", "pear"):
        client.post("/items", json={"name": name})
    assert client.get("/items/count").json() == {"count": 2}
