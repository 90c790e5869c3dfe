from fastapi.testclient import TestClient


def test_stats_counts_items(client: TestClient) -> None:
    """The stats endpoint reports a non-negative item count."""
    response = client.get("/stats")
    assert response.status_code == 200
    count = response.json()["items"]
    assert isinstance(count, int)
    assert count >= 0
