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
        # Not checked here: a path that cannot be written (a directory, a missing
        # or read-only place) costs a warning when opened, never the run.
        return Path(raw).expanduser()
    return (root or Path.cwd()) / DEFAULT_TRACE_FILE


EXPORTERS = ("otlp", "console", "none")
OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
DEFAULT_EXPORT_TIMEOUT = 3.0  # seconds: the most the end of a run waits for a collector


def span_exporter(environ: Mapping[str, str] = os.environ) -> tuple[str, bool]:
    """``(exporter, explicit)`` from ``DEPSTRACE_EXPORTER`` (docs/tracing.md).

    Unset, the choice is ``otlp`` when an ``OTEL_EXPORTER_OTLP_*ENDPOINT``
    variable names a collector and ``none`` otherwise, so a suite never waits
    for a collector nobody asked for.
    """
    raw = environ.get("DEPSTRACE_EXPORTER", "").strip()
    if not raw:
        wanted = any(environ.get(name, "").strip() for name in OTLP_ENDPOINT_VARS)
        return ("otlp" if wanted else "none"), False
    value = raw.lower()
    if value not in EXPORTERS:
        raise ConfigurationError(
            f"DEPSTRACE_EXPORTER={raw!r} is not a valid value. Set DEPSTRACE_EXPORTER to "
            f"{', '.join(EXPORTERS[:-1])} or {EXPORTERS[-1]} (or unset it: then spans go to "
            "OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, else nowhere)."
        )
    return value, True


def export_timeout(environ: Mapping[str, str] = os.environ) -> float:
    """``DEPSTRACE_EXPORT_TIMEOUT`` in seconds: bounds each export, the wait for a
    collector's first answer and the final flush."""
    raw = environ.get("DEPSTRACE_EXPORT_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_EXPORT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigurationError(
            f"DEPSTRACE_EXPORT_TIMEOUT={raw!r} is not a positive number of seconds; set it "
            f"to, say, {DEFAULT_EXPORT_TIMEOUT:g} (the default) or 0.5."
        )
    return value


GUARD_MODES = ("off", "writes", "all")


def guard_mode(environ: Mapping[str, str] = os.environ, *, source: str = "DEPSTRACE_GUARD") -> str:
    """``DEPSTRACE_GUARD`` (docs/guard.md): ``off`` (the default), ``writes`` or ``all``.
    ``source`` names where the value came from in the error (an option, an ini line)."""
    raw = environ.get("DEPSTRACE_GUARD", "")
    return parse_guard(raw, source=source)


def parse_guard(raw: str, *, source: str = "DEPSTRACE_GUARD") -> str:
    """Check one guard mode value; unset or empty is ``off``."""
    value = raw.strip().lower() or "off"
    if value in GUARD_MODES:
        return value
    raise ConfigurationError(
        f"{source}={raw!r} is not a valid value. Set {source} to off (the default: "
        "refuse nothing), writes (refuse writes on databases that are not test "
        "databases) or all (refuse every statement on them)."
    )
