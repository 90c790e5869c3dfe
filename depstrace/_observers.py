"""What other parts of depstrace (spans, logs) hear from a trace session.

An :class:`Observer` subclass overrides only the events it needs.  The session
calls each observer inside its own ``try``: a failing observer is reported as
an internal error and never breaks the request, the test or the other
observers.  Events arrive on whatever thread the request or test runs on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from depstrace._records import RequestRecord


class Observer:
    """Base class with a no-op for every event."""

    name = "observer"  # used in internal-error reports

    def request_opened(self, record: RequestRecord, scope: Any) -> None:
        """A request record was opened (before the app runs); ``scope`` may be changed."""

    def request_solving(self, record: RequestRecord) -> None:
        """FastAPI started solving the request's dependencies (inside the app's context)."""

    def request_closed(self, record: RequestRecord, data: dict[str, Any]) -> None:
        """The request finished; ``data`` is its JSON Lines record, findings included."""

    def run_finding(self, data: dict[str, Any]) -> None:
        """A finding tied to no request (its ``"type": "finding"`` record)."""

    def test_started(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        """A pytest test starts (before its fixtures are set up)."""

    def test_finished(self, nodeid: str, outcome: str) -> None:
        """A pytest test ended (after teardown): passed, failed, skipped or error."""

    def finish(self) -> list[str]:
        """The run is over: flush, and return lines for the end-of-run account."""
        return []
