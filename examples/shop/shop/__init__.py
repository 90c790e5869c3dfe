"""A tiny FastAPI shop used as the depstrace example."""
