"""A shop API whose routes use a timed wrapper around ``app.deps.get_db``."""
