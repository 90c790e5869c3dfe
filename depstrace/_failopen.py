"""Fail open: an error inside depstrace is logged and counted, never raised.

The tracer must never break the application it observes.  Every hook catches
its own exceptions and reports them here; the pytest summary says how many
there were so an incomplete trace is never mistaken for a clean one.
"""

from __future__ import annotations

import logging
from collections import Counter

from depstrace._redact import redact_text

logger = logging.getLogger("depstrace")
internal_errors: Counter[str] = Counter()


def report_internal_error(where: str) -> None:
    """Log the exception being handled (first time per place) and count it."""
    internal_errors[where] += 1
    if internal_errors[where] == 1:
        import sys

        exc = sys.exc_info()[1]
        logger.warning(
            "depstrace internal error in %s (tracing continues, this request's record "
            "may be incomplete): %s: %s",
            where,
            type(exc).__name__,
            redact_text(str(exc)),
        )
