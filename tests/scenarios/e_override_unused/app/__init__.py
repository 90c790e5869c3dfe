"""A shop API whose routes moved from ``get_session`` to ``get_db``."""
