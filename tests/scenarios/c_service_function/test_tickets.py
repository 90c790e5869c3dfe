def test_open_ticket(client):
    """Opening a ticket answers 201 with the ticket."""
    response = client.post("/tickets", json={"title": "broken chair"})
    assert response.status_code == 201
    assert response.json()["title"] == "broken chair"


def test_dashboard(client):
    """The dashboard shows the newest tickets and how many are open."""
    client.post("/tickets", json={"title": "broken chair"})
    assert client.get("/dashboard").json() == {"latest": ["broken chair"], "open": 1}
