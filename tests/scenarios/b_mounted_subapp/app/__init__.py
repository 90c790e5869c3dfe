"""A shop API with an admin API mounted under ``/admin``."""
