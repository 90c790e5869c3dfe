"""Helpers for testing code with depstrace, in the spirit of ``structlog.testing``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from depstrace._instrument import instrument, is_instrumented, uninstrument
from depstrace._session import active_session


@contextmanager
def capture(*, test_db: Any = None) -> Iterator[list[dict[str, Any]]]:
    """Collect the request records that close inside the ``with`` block.

    Instruments for the block when depstrace is not already tracing (writing no
    file; ``test_db`` is the rule then) and restores everything in ``finally``;
    inside a traced run it only listens, so nested use is safe.
    """
    owned = not is_instrumented()
    session = instrument(trace_file=None, test_db=test_db) if owned else active_session()
    assert session is not None
    records: list[dict[str, Any]] = []
    session.listeners.append(records.append)
    try:
        yield records
    finally:
        session.listeners.remove(records.append)
        if owned:
            uninstrument()
