def test_create_order(client):
    """An order is created and listed."""
    response = client.post("/orders", json={"product": "lamp"})
    assert response.status_code == 201
    assert client.get("/orders").json() == ["lamp"]


def test_order_is_audited(client):
    """Every order leaves one audit entry."""
    order = client.post("/orders", json={"product": "lamp"}).json()
    assert client.get("/audit").json() == [f"order {order['id']}: lamp"]
