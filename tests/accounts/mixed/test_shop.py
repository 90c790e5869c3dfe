import pytest
import sqlalchemy as sa
from app import SessionLocal


@pytest.fixture(scope="module")
def counted():
    with SessionLocal() as session:
        yield session.execute(sa.text("SELECT count(*) FROM items")).scalar_one()
        session.execute(sa.text("DELETE FROM audit"))
        session.commit()


def test_items(client):
    assert client.get("/items").status_code == 200


def test_order(client):
    assert client.post("/orders").status_code == 201


def test_stats(client, counted):
    assert client.get("/stats").json() >= counted


def test_stats_again(client):
    assert client.get("/stats").status_code == 200


def test_report(client):
    assert client.get("/admin/report").status_code == 200


def test_z_last(client):
    assert client.get("/items").status_code == 200
