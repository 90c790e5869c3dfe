"""Listing items."""

from fastapi.testclient import TestClient


def test_list_starts_empty(client: TestClient) -> None:
    """The production row is not visible; earlier tests' items were deleted."""
    assert client.get("/items").json() == []


def test_list_in_insertion_order(client: TestClient) -> None:
    """Items are listed in the order they were created."""
    for name in ("widget", "gadget", "doohickey"):
        client.post("/items", json={"name": name})
    assert client.get("/items").json() == ["widget", "gadget", "doohickey"]
