"""The admin API."""

from fastapi.testclient import TestClient


def test_stats_counts_items(client: TestClient) -> None:
    """/admin/stats counts the items in the shop."""
    client.post("/items", json={"name": "widget"})
    client.post("/items", json={"name": "gadget"})
    assert client.get("/admin/stats").json() == {"items": 2}
