from fastapi.testclient import TestClient


def test_admin_report(client: TestClient) -> None:
    """The admin report answers with item and order counts."""
    response = client.get("/admin/report")
    assert response.status_code == 200
    assert set(response.json()) == {"items", "orders"}
