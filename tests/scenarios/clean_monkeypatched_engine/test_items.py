"""The items API with the module-level engine swapped for the test database."""

from app.db import AuditEntry
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select


def test_create_item_is_audited(client: TestClient, test_engine: Engine) -> None:
    """POST /items stores the item, and the background task audits it."""
    response = client.post("/items", json={"name": "widget"})
    assert response.status_code == 201
    with test_engine.connect() as conn:
        assert conn.scalars(select(AuditEntry.action)).all() == ["created item 1"]


def test_list_starts_empty(client: TestClient) -> None:
    """The production row is not visible: the test database starts empty."""
    assert client.get("/items").json() == []
