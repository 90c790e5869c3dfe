"""A shop API whose service layer opens sessions from the module-level ``app.db.SessionLocal``."""
