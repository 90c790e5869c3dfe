def test_create_product(client):
    """Creating a product answers 201 with the product."""
    response = client.post("/products", json={"name": "lamp"})
    assert response.status_code == 201
    assert response.json()["name"] == "lamp"


def test_list_products(client):
    """A created product shows up in the listing."""
    client.post("/products", json={"name": "desk"})
    assert "desk" in client.get("/products").json()
