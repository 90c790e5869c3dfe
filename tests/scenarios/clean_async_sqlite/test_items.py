"""The async items API on a fresh test database."""

import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_create_and_read(client: httpx.AsyncClient) -> None:
    """A created item can be read back by id."""
    created = await client.post("/items", json={"name": "widget"})
    assert created.status_code == 201
    assert (await client.get(f"/items/{created.json()['id']}")).json() == created.json()


async def test_list_starts_empty(client: httpx.AsyncClient) -> None:
    """Each test starts with no items (the production row is not visible)."""
    assert (await client.get("/items")).json() == []


async def test_missing_item(client: httpx.AsyncClient) -> None:
    """An unknown id is a 404."""
    assert (await client.get("/items/1")).status_code == 404
