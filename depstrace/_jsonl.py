"""Writing and reading the JSON Lines trace (docs/format.md).

The writer fails open: a trace file that cannot be opened or written (a
missing directory, a read-only place, a full disk) costs one warning and the
file, never a request or a test; :attr:`JsonlWriter.error` says what went wrong
so the account can say the file is incomplete.  Nothing here calls through a
standard-library module attribute a test may patch (``json.dumps``): the
encoder is built once, at import.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from depstrace._failopen import report_internal_error, warn

# json.dumps builds a JSONEncoder per call and is looked up on the json module,
# where tests patch it (FastAPI's own suite counts its calls); this one is ours.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def encode_line(record: dict[str, Any]) -> str:
    """``record`` as one line of the trace, newline included."""
    return _encode(record) + "\n"


def encode_or_report(record: dict[str, Any]) -> str | None:
    """:func:`encode_line`, or None (an internal error) for a value it cannot encode."""
    try:
        return encode_line(record)
    except Exception:
        report_internal_error(f"trace file (encoding a {record.get('type')} record)")
        return None


def describe_os_error(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the OS's words and the errno name."""
    name = errno.errorcode.get(exc.errno or 0)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason} ({name})" if name else reason


class JsonlWriter:
    """Appends one JSON object per line; thread-safe; buffered; never raises.

    The buffer is flushed by :meth:`flush` (after every test) and on close, not
    per record: a ``write`` syscall per request was most of depstrace's cost.
    A run killed mid-buffer leaves a truncated last line, which readers skip.
    The first failure to open or write the file sets :attr:`error`, warns once
    and stops writing; records stay wherever else they are kept (the session's
    memory), so only the file is incomplete.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # Why the file is missing or incomplete, in words for the account.
        self.error: str | None = None
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        with self._lock:
            self._open()

    def _open(self) -> None:
        """Open the file (lock held); a failure is reported, not raised."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # backslashreplace: a lone surrogate (an undecodable file name) becomes
            # the JSON escape \udcxx inside its string instead of a UnicodeEncodeError.
            self._file = self.path.open("w", encoding="utf-8", errors="backslashreplace")
        except OSError as exc:
            self._fail(f"no trace file: cannot open {self.path}: {self._open_failure(exc)}")

    def _open_failure(self, exc: OSError) -> str:
        """Why opening failed, with the fix when the path itself is the mistake."""
        reason = describe_os_error(exc)
        if self.path.is_dir():
            return f"{reason}; name a file such as {self.path / 'trace.jsonl'}"
        blocker = next((p for p in self.path.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            return f"{blocker} is a file, not a directory"
        return reason

    def _fail(self, error: str) -> None:
        """Stop writing for good (lock held): close what is open, warn once."""
        if self.error is not None:
            return
        self.error = error
        broken, self._file = self._file, None
        if broken is not None:
            with contextlib.suppress(OSError, ValueError):
                broken.close()  # tries the failing flush once more, then frees the descriptor
        warn(f"depstrace: {error}; tracing continues in memory.")

    def _write_failed(self, exc: OSError | ValueError) -> None:
        reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        self._fail(f"the trace file {self.path} is incomplete: writing it failed: {reason}")

    def write(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line (no-op once closed or failed)."""
        line = encode_or_report(record)
        if line is not None:
            with self._lock:
                self._emit(line)

    def _emit(self, line: str) -> None:
        """Write one encoded line (lock held)."""
        if self._file is not None:
            try:
                self._file.write(line)
            except (OSError, ValueError) as exc:  # the buffer filled and its flush failed
                self._write_failed(exc)

    def flush(self) -> None:
        """Push buffered records to the file."""
        with self._lock:
            if self._file is not None:
                try:
                    self._file.flush()
                except (OSError, ValueError) as exc:
                    self._write_failed(exc)

    def close(self) -> None:
        """Close the file (flushing it); later writes are dropped."""
        with self._lock:
            file, self._file = self._file, None
            if file is not None:
                try:
                    file.close()  # closes the descriptor even when its flush fails
                except (OSError, ValueError) as exc:
                    self._write_failed(exc)


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of a trace file.

    A truncated *last* line (a run killed mid-write) is skipped; a malformed
    line anywhere else is an error naming the file and line number.
    """
    with open(path, encoding="utf-8") as file:
        lines = file.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not line.endswith("\n"):
                return  # truncated last line
            raise ValueError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        if not isinstance(record, dict) or "type" not in record:
            raise ValueError(f'{path}:{number}: not a depstrace record (no "type" key)')
        yield record
