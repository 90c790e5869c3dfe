"""Where depstrace keeps "what is running now": the request, the solver frame, the test.

The request and the solver frame live in contextvars: every ASGI request runs in
its own task, so records stay separate under concurrency, and sync dependencies
run in a *copy* of the context (``run_in_threadpool``), so code in the thread can
read the request but never replace it.  The running pytest test is plain process
state on purpose: ``TestClient`` and uvicorn serve requests from other threads
whose contexts are not copies of the test's.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from depstrace._records import RequestRecord
    from depstrace.fastapi import _Frame

current_request: ContextVar[RequestRecord | None] = ContextVar("depstrace_request", default=None)
current_frame: ContextVar[_Frame | None] = ContextVar("depstrace_solver_frame", default=None)


@dataclass(frozen=True)
class TestPhase:
    """The pytest test and phase that is running, or ``None`` outside one."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    nodeid: str | None
    phase: str  # "startup", "collection", "setup", "call", "teardown", "finish", "runtime"
    # The pytest fixture whose setup or teardown is running ({name, scope, site}), or
    # None: a session-scoped fixture runs inside whichever test first needs it, and
    # what it does belongs to the fixture, not to that test.
    fixture: dict[str, Any] | None = None


_lock = threading.Lock()
_phase = TestPhase(nodeid=None, phase="runtime")


def test_phase() -> TestPhase:
    """Return the test and phase running now (one attribute read: hot-path safe)."""
    return _phase


def set_test_phase(nodeid: str | None, phase: str) -> TestPhase:
    """Record the running test and phase; return the previous value for restoring."""
    global _phase
    with _lock:
        previous, _phase = _phase, TestPhase(nodeid=nodeid, phase=phase)
    return previous


def set_fixture(fixture: dict[str, Any] | None) -> dict[str, Any] | None:
    """Record the fixture whose code runs now (keeping test and phase); return the
    previous one for restoring.  Only the fixture is swapped back, never a whole
    :class:`TestPhase`: a session fixture set up in one test is torn down in another."""
    global _phase
    with _lock:
        previous = _phase.fixture
        _phase = replace(_phase, fixture=fixture)
    return previous


def restore_test_phase(previous: TestPhase) -> None:
    """Put back what :func:`set_test_phase` returned."""
    global _phase
    with _lock:
        _phase = previous
