"""An async shop API: aiosqlite, ``AsyncSession`` from ``Depends(get_db)``."""
