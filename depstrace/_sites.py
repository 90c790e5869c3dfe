"""Where user code did something (created an engine or an app, wrote an override),
found by one frame walk.

Called once per ``create_engine`` / ``FastAPI()`` / override write, never per
request or statement.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from types import CodeType, FrameType
from typing import NamedTuple

from depstrace._callables import library_dirs, shorten_path
from depstrace._context import test_phase

_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_IMPORT_MACHINERY = "<frozen importlib"
_LIBRARY_DIRS: tuple[str, ...] | None = None


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
        if filename.startswith(_IMPORT_MACHINERY):
            importing = True
            break
        if site is None and not filename.startswith(skipped):
            site = f"{shorten_path(filename)}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return site, "import" if importing else test_phase().phase


class UserCall(NamedTuple):
    """What one walk up the stack found about the user code that made a call."""

    site: str | None  # "file:line" of the first user frame (else of the first non-depstrace one)
    importing: bool  # the call ran inside an import: module-level code, whoever imported it
    mark: str | None  # what ``marks`` says of the innermost frame whose code it holds


def user_call(marks: Mapping[CodeType, str]) -> UserCall:
    """Walk up from the caller of the depstrace function that calls this.

    User frames are those outside depstrace, the standard library and
    site-packages, so a write made by pytest's ``monkeypatch`` or by a helper
    library is placed on the user's line that called it.
    """
    libraries = library_dirs()
    frame: FrameType | None = sys._getframe(1)
    site: str | None = None
    fallback: str | None = None
    importing = False
    mark: str | None = None
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename
        if filename.startswith(_IMPORT_MACHINERY):  # module-level code of an import
            importing = True
            break
        if mark is None:
            mark = marks.get(code)
        if site is None and not filename.startswith(("<", *libraries)):
            site = f"{shorten_path(filename)}:{frame.f_lineno}"
        elif fallback is None and not filename.startswith(_OWN_DIR):
            fallback = f"{_within_library(filename, libraries)}:{frame.f_lineno}"
        frame = frame.f_back
    return UserCall(site if site is not None else fallback, importing, mark)


def _within_library(filename: str, libraries: tuple[str, ...]) -> str:
    """``package/module.py`` for a file under site-packages or the standard library."""
    inside = [d for d in libraries if filename.startswith(d)]
    if inside:  # the deepest: site-packages lies inside the venv's lib/pythonX.Y
        return filename[len(max(inside, key=len)) :]
    return shorten_path(filename)
