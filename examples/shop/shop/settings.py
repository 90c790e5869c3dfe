"""Configuration, read from the environment once, at import time.

That is the usual twelve-factor pattern, and it is also why a test suite that
imports the app gets the *production* URL baked into the module-level engine.
"""

import os
from pathlib import Path

#: ``sqlite`` (default) or ``postgres``.
BACKEND = os.environ.get("SHOP_BACKEND", "sqlite").strip().lower()
if BACKEND not in {"sqlite", "postgres"}:
    raise RuntimeError(f"SHOP_BACKEND must be 'sqlite' or 'postgres', not {BACKEND!r}")

#: Where the SQLite files live (``examples/shop/.data/`` unless overridden).
DATA_DIR = Path(
    os.environ.get("SHOP_DATA_DIR", Path(__file__).resolve().parent.parent / ".data")
).resolve()

if BACKEND == "postgres":
    _DEFAULT_PROD_URL = os.environ.get(
        "SHOP_PG_PROD_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/depstrace_shop_prod"
    )
    _DEFAULT_TEST_URL = os.environ.get(
        "SHOP_PG_TEST_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/depstrace_shop_test"
    )
else:
    # SQLite does not create missing directories, so make the data dir on demand.
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    _DEFAULT_PROD_URL = f"sqlite+aiosqlite:///{DATA_DIR / 'prod.db'}"
    _DEFAULT_TEST_URL = f"sqlite+aiosqlite:///{DATA_DIR / 'test.db'}"

#: The database the app talks to: production unless the environment says otherwise.
DATABASE_URL: str = os.environ.get("DATABASE_URL", _DEFAULT_PROD_URL)

#: The database the test suite is meant to use.
TEST_DATABASE_URL: str = os.environ.get("TEST_DATABASE_URL", _DEFAULT_TEST_URL)
