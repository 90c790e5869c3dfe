"""Fail open: an error inside depstrace is counted and said once, never raised.

The tracer must never break the application it observes.  Every hook catches
its own exceptions and reports them here; the end-of-run account says how many
there were so an incomplete trace is never mistaken for a clean one.

Each warning is kept in :data:`warnings` for the account and, except under
pytest, logged on the ``depstrace`` logger when it happens.  The pytest plugin
calls :func:`hold_warnings`: a warning logged while a test runs would land in
that test's ``caplog`` and could fail a test that asserts on its log records,
and depstrace changes no test's outcome; the account says them instead.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter

from depstrace._redact import redact_text

logger = logging.getLogger("depstrace")
internal_errors: Counter[str] = Counter()
warnings: list[str] = []  # every warning of this session, for the account
_holding = False


def hold_warnings(on: bool) -> None:
    """Keep warnings for the account only (``True``), or also log them at once."""
    global _holding
    _holding = on


def warn(message: str) -> None:
    """Say ``message`` (once per fault: callers decide): kept for the account, and
    logged on the ``depstrace`` logger unless :func:`hold_warnings` is on."""
    warnings.append(message)
    if not _holding:
        logger.warning("%s", message)


def reset() -> None:
    """Forget the errors and warnings of an earlier session."""
    internal_errors.clear()
    warnings.clear()


def report_internal_error(where: str) -> None:
    """Count the exception being handled; warn about the first one per place."""
    internal_errors[where] += 1
    if internal_errors[where] == 1:
        exc = sys.exc_info()[1]
        warn(
            f"depstrace internal error in {where} (tracing continues, this request's record "
            f"may be incomplete): {type(exc).__name__}: {redact_text(str(exc))}"
        )
