"""A small shop API whose routes take their session from ``app.deps.get_db``."""
