"""depstrace: see which FastAPI dependency and which database every request used.

Run ``DEPSTRACE=1 pytest`` to trace a suite; use :func:`instrument` outside
pytest.  Importing this package imports neither FastAPI nor SQLAlchemy.
"""

from __future__ import annotations

from depstrace._config import ConfigurationError
from depstrace._instrument import instrument, is_instrumented, uninstrument
from depstrace._jsonl import read_records
from depstrace._redact import redact_url
from depstrace._testdb import TestDatabaseRule
from depstrace._version import VERSION as __version__
from depstrace.assertions import NotInstrumentedError, assert_all_resolved_to_test_db
from depstrace.guard import GuardRefused, allow_db
from depstrace.middleware import DepstraceMiddleware

__all__ = [
    "ConfigurationError",
    "DepstraceMiddleware",
    "GuardRefused",
    "NotInstrumentedError",
    "TestDatabaseRule",
    "__version__",
    "allow_db",
    "assert_all_resolved_to_test_db",
    "instrument",
    "is_instrumented",
    "read_records",
    "redact_url",
    "uninstrument",
]
