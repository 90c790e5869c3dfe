"""The service layer: opens its own sessions from ``db.SessionLocal`` (no ``Depends``).

It reads ``db.SessionLocal`` at call time, so tests can swap it.
"""

from sqlalchemy import select

from app import db


def create_item(name: str) -> dict[str, object]:
    with db.SessionLocal() as session:
        item = db.Item(name=name)
        session.add(item)
        session.commit()
        return {"id": item.id, "name": item.name}


def item_names() -> list[str]:
    with db.SessionLocal() as session:
        return list(session.scalars(select(db.Item.name).order_by(db.Item.id)))


def audit(action: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(db.AuditEntry.__table__.insert().values(action=action))
