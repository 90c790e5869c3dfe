"""A shop API with one FastAPI sub-app per API version, mounted at ``/v1``, ``/v2``."""
