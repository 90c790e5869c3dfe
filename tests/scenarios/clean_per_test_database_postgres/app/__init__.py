"""An async shop API on PostgreSQL (asyncpg), ``AsyncSession`` from ``Depends(get_db)``."""
