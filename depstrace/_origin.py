"""Where user code reached a database that no dependency provided.

Called only when a finding is about to be made (the first statement of a
request on a *non-test* engine, or outside any request), never on the hot path
of a correct suite.  One walk up the stack finds the first frame in user code;
SQLAlchemy's asyncio layer runs statements in a greenlet, so the walk continues
in the parent greenlet's suspended frame.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from types import FrameType

from depstrace._callables import library_dirs, shorten_path


def _frames() -> Iterator[FrameType]:
    frame: FrameType | None = sys._getframe(2)
    greenlet_module = sys.modules.get("greenlet")
    greenlet = greenlet_module.getcurrent() if greenlet_module is not None else None
    while frame is not None:
        yield frame
        frame = frame.f_back
        while frame is None and greenlet is not None:  # continue in the parent greenlet
            greenlet = getattr(greenlet, "parent", None)
            frame = getattr(greenlet, "gr_frame", None) if greenlet is not None else None


def user_frame() -> FrameType | None:
    """The innermost frame whose file is not in the standard library, a
    site-packages directory or depstrace itself."""
    libraries = library_dirs()
    for frame in _frames():
        filename = frame.f_code.co_filename
        if filename.startswith(("<", *libraries)):
            continue
        return frame
    return None


# (frame, engine id) -> the module-level name in the frame's globals that opened that
# engine (``app.db.SessionLocal``), or None.  The SQLAlchemy probe adds its finder when
# it is imported: the probes sit above this module.
FactoryFinder = Callable[[FrameType, str], "str | None"]
factory_finders: list[FactoryFinder] = []


def _module_factory(frame: FrameType, engine_id: str) -> str | None:
    for finder in factory_finders:
        found = finder(frame, engine_id)
        if found is not None:
            return found
    return None


def describe_origin(engine_id: str, *, endpoint: str | None, phase: str) -> str:
    """One phrase: where the statement came from, e.g. ``the background task
    app/tasks.py:12 in write_audit(), through module-level app.db.SessionLocal``."""
    frame = user_frame()
    if frame is None:
        return f"{phase} no user code depstrace could find".lstrip()
    code = frame.f_code
    site = f"{shorten_path(code.co_filename)}:{frame.f_lineno}"
    function = getattr(code, "co_qualname", code.co_name)
    module = frame.f_globals.get("__name__", "?")
    where = f"{site} in {module}:{function}()"
    if endpoint is not None and endpoint == f"{module}:{function}":
        where = f"the endpoint itself, {where}"
    factory = _module_factory(frame, engine_id)
    text = f"{phase} {where}" if phase else where
    if factory is not None:
        text += f", through module-level {factory}"
    return text
