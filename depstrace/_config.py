"""Reading depstrace's environment variables (DESIGN.md §2), strictly.

Light on purpose: the pytest plugin imports this module while deciding whether
to do anything at all, and must not import FastAPI or SQLAlchemy then.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENABLE_VALUES = ("1", "true", "yes", "on")
DISABLE_VALUES = ("0", "false", "no", "off")
DEFAULT_TRACE_FILE = Path(".depstrace") / "trace.jsonl"


class ConfigurationError(ValueError):
    """A depstrace setting has a value depstrace cannot use; the message says the fix."""


def parse_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``DEPSTRACE`` asks for tracing; any unknown value is an error."""
    raw = environ.get("DEPSTRACE")
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ENABLE_VALUES:
        return True
    if value in DISABLE_VALUES or value == "":
        return False
    raise ConfigurationError(
        f"DEPSTRACE={raw!r} is not a valid value. Set DEPSTRACE to one of "
        f"{', '.join(ENABLE_VALUES)} to enable depstrace, or to one of "
        f"{', '.join(DISABLE_VALUES)} (or unset it) to disable it."
    )


def trace_file(environ: Mapping[str, str] = os.environ, *, root: Path | None = None) -> Path:
    """``DEPSTRACE_FILE`` if set, else ``.depstrace/trace.jsonl`` under ``root``."""
    raw = environ.get("DEPSTRACE_FILE", "").strip()
    if raw:
        path = Path(raw).expanduser()
        if path.exists() and path.is_dir():
            raise ConfigurationError(
                f"DEPSTRACE_FILE={raw!r} is a directory; name a file such as {path / 'trace.jsonl'}"
            )
        return path
    return (root or Path.cwd()) / DEFAULT_TRACE_FILE
