def test_list(client):
    assert client.get("/items").json() >= 1


def test_create(client):
    assert client.post("/items").status_code == 201
