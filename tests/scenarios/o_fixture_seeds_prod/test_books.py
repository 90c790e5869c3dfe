def test_list_books(client, books):
    """The listing shows the seeded books."""
    assert client.get("/books").json() == books


def test_add_book(client):
    """Adding a book answers 201 with the book."""
    response = client.post("/books", json={"title": "Ulysses"})
    assert response.status_code == 201
    assert response.json()["title"] == "Ulysses"
