def test_default_categories(client):
    """A fresh install has the default categories."""
    assert client.get("/categories").json() == ["general", "news"]


def test_create_category(client):
    """Creating a category answers 201 with the category."""
    response = client.post("/categories", json={"name": "recipes"})
    assert response.status_code == 201
    assert response.json()["name"] == "recipes"
