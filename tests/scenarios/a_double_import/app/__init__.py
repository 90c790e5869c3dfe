"""A shop API written to run from inside its folder (``cd app && uvicorn main:app``):
its modules import each other as top-level names (``from deps import get_db``)."""
