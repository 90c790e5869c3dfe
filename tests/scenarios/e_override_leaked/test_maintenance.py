"""Maintenance mode."""

from app.deps import Settings, get_settings
from app.main import app
from fastapi.testclient import TestClient


def test_writes_refused_in_maintenance(client: TestClient) -> None:
    """While in maintenance, POST /items answers 503."""
    app.dependency_overrides[get_settings] = lambda: Settings(maintenance_mode=True)
    response = client.post("/items", json={"name": "widget"})
    assert response.status_code == 503
