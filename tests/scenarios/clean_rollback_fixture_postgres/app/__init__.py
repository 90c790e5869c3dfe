"""A shop API on PostgreSQL whose routes commit (and roll back) their own session."""
