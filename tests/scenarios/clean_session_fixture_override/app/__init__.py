"""A shop API whose routes take their session from ``Depends(get_db)``."""
