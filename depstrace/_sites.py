"""Where user code created something (an engine, an app), found by one frame walk.

Called once per ``create_engine`` / ``FastAPI()``, never per request or statement.
"""

from __future__ import annotations

import os
import sys

from depstrace._callables import shorten_path
from depstrace._context import test_phase

_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def library_dir(module: object) -> str:
    """The directory of a package module, to skip its frames."""
    return os.path.dirname(os.path.abspath(getattr(module, "__file__", None) or "")) + os.sep


def caller_site(skip: tuple[str, ...] = ()) -> tuple[str | None, str]:
    """``("file:line", phase)`` of the first frame outside depstrace and ``skip``.

    The phase is ``import`` when the call happened while a module was being
    imported (module-level code), else the test phase running now.
    """
    frame = sys._getframe(1)
    skipped = (_OWN_DIR, *skip)
    site: str | None = None
    importing = False
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith("<frozen importlib"):
            importing = True
            break
        if site is None and not filename.startswith(skipped):
            site = f"{shorten_path(filename)}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return site, "import" if importing else test_phase().phase
