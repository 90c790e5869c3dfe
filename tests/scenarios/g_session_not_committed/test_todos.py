def test_create_todo(client):
    """Creating a todo answers 201 with its new id."""
    response = client.post("/todos", json={"title": "write docs"})
    assert response.status_code == 201
    assert response.json() == {"id": 1, "title": "write docs"}


def test_created_todo_is_listed(client):
    """A created todo shows up in the listing."""
    client.post("/todos", json={"title": "write docs"})
    assert client.get("/todos").json() == ["write docs"]
