"""A conftest that reads the development database while it is imported."""

from sqlalchemy import create_engine, text

engine = create_engine("sqlite:///dev.db")
with engine.connect() as conn:
    conn.execute(text("SELECT 1"))
