import pytest


@pytest.mark.parametrize("item_id", range(30))
def test_read(client, item_id):
    assert client.get(f"/items/{item_id}").status_code == 200


@pytest.mark.parametrize("n", range(10))
def test_create_then_list(client, n):
    assert client.post("/items").status_code == 201
    assert client.get("/items").status_code == 200


@pytest.mark.parametrize("n", range(7))
def test_create(client, n):
    assert client.post("/items").status_code == 201
