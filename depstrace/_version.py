"""The installed distribution's version (``0+unknown`` in a source tree not installed)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("depstrace")
except PackageNotFoundError:  # running from a source tree that is not installed
    VERSION = "0+unknown"
