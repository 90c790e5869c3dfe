def test_create_note(client):
    """Creating a note answers 201 with the note."""
    response = client.post("/notes", json={"text": "buy milk"})
    assert response.status_code == 201
    assert response.json()["text"] == "buy milk"


def test_list_notes(client):
    """The listing shows exactly the notes created in this test."""
    client.post("/notes", json={"text": "buy milk"})
    assert client.get("/notes").json() == ["buy milk"]
