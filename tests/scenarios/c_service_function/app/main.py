from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import services
from app.database import Ticket, get_db

app = FastAPI(title="helpdesk")


class TicketIn(BaseModel):
    title: str


@app.post("/tickets", status_code=201)
def open_ticket(payload: TicketIn, db: Annotated[Session, Depends(get_db)]) -> dict:
    ticket = Ticket(title=payload.title)
    db.add(ticket)
    db.commit()
    return {"id": ticket.id, "title": ticket.title}


@app.get("/dashboard")
def dashboard(db: Annotated[Session, Depends(get_db)]) -> dict:
    latest = db.scalars(select(Ticket.title).order_by(Ticket.id.desc()).limit(3)).all()
    return {"latest": latest, "open": services.count_open_tickets()}
