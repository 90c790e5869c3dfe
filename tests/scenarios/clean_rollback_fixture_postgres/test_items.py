"""The items API inside a transaction that is rolled back after each test."""

from fastapi.testclient import TestClient


def test_create_and_list(client: TestClient) -> None:
    """A committed item is listed by the next request."""
    assert client.post("/items", json={"name": "widget"}).status_code == 201
    assert client.post("/items", json={"name": "gadget"}).status_code == 201
    assert client.get("/items").json() == ["widget", "gadget"]


def test_previous_test_was_rolled_back(client: TestClient) -> None:
    """The items the previous test committed are gone."""
    assert client.get("/items").json() == []


def test_duplicate_name(client: TestClient) -> None:
    """A second item with the same name is refused; the app rolls back."""
    assert client.post("/items", json={"name": "widget"}).status_code == 201
    assert client.post("/items", json={"name": "widget"}).status_code == 409
