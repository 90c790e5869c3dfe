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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from depstrace._failopen import report_internal_error, warn

# json.dumps builds a JSONEncoder per call and is looked up on the json module,
# where tests patch it (FastAPI's own suite counts its calls); this one is ours.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


# The reader's decoder, bound here for the same reason (the controller reads its
# workers' files while the run's patches may still be in place).
_decode = json.JSONDecoder().decode


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
    Writes reach the file whole lines at a time; a process killed inside a
    ``write`` call (or a full disk) can still leave a truncated last line,
    which :func:`scan` reports.
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


@dataclass
class Scan:
    """What reading one trace file found: its records, with line numbers, and its damage."""

    path: str
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)  # "file:line: why", one per bad line
    cut_bytes: int | None = None  # length of a last line that ends mid-record
    seen: int = 0  # complete records read (also when streamed, not kept)

    def problems(self, who: str = "a process") -> list[str]:
        """The damage in words: each bad line, then a cut last line with its byte count."""
        problems = list(self.bad_lines)
        if self.cut_bytes is not None:
            problems.append(
                f"{self.path}: last line cut after {self.cut_bytes} bytes ({who} killed "
                f"mid-write?); {self.seen} complete record"
                f"{'s' if self.seen != 1 else ''} read"
            )
        return problems


def scan(path: str | os.PathLike[str], *, label: str | None = None) -> Scan:
    """Read a trace file, keeping what is readable and saying what is not.

    A line that is not a JSON object with a ``"type"`` is named in
    ``bad_lines``; a last line without its newline that does not parse is a
    record cut mid-write (``cut_bytes``).  Raises ``OSError`` only when the file
    cannot be read at all.  ``label`` names the file in messages (default: ``path``).
    """
    found = Scan(label or os.fspath(path))
    found.records.extend(stream(path, found))
    return found


def stream(path: str | os.PathLike[str], found: Scan) -> Iterator[tuple[int, dict[str, Any]]]:
    """:func:`scan` one record at a time: yields ``(line, record)`` and notes the
    damage in ``found`` as it goes (``found.records`` stays empty).

    The file is opened at once, so ``OSError`` for a file that cannot be read is
    raised by this call, not by the first ``next()``; memory stays flat however
    long the file is (``depstrace report`` on a 200 MB trace).
    """
    file = open(path, "rb")  # noqa: SIM115  # closed by the generator; bytes: a cut may split UTF-8

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        with file:
            for number, raw in enumerate(file, start=1):
                if not raw.strip():
                    continue
                try:
                    record = _decode(raw.decode("utf-8"))
                except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                    if not raw.endswith(b"\n"):
                        found.cut_bytes = len(raw)
                        break
                    why = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                    found.bad_lines.append(f"{found.path}:{number}: not a JSON object ({why})")
                    continue
                if not isinstance(record, dict) or not isinstance(record.get("type"), str):
                    found.bad_lines.append(
                        f'{found.path}:{number}: not a depstrace record (no "type" key)'
                    )
                    continue
                found.seen += 1
                yield number, record

    return records()


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of a trace file.

    A truncated *last* line (a run killed mid-write) is skipped; a malformed
    line anywhere else is an error naming the file and line number.  Use
    ``depstrace report`` to have a cut line reported rather than skipped.
    """
    found = scan(path)
    if found.bad_lines:
        raise ValueError(found.bad_lines[0])
    for _, record in found.records:
        yield record
