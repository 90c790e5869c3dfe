def test_list_notes(client):
    """Anyone can read the notes."""
    assert client.get("/notes").json() == ["welcome"]


def test_create_note(client):
    """A user with the notes:write scope creates a note in their name."""
    response = client.post("/notes", json={"text": "hello"}, headers={"X-User": "ada"})
    assert response.status_code == 201
    assert response.json()["author"] == "ada"
