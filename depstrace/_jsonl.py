"""Writing and reading the JSON Lines trace (docs/format.md)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


class JsonlWriter:
    """Appends one JSON object per line; thread-safe; buffered.

    The buffer is flushed by :meth:`flush` (after every test) and on close, not
    per record: a ``write`` syscall per request was most of depstrace's cost.
    Writes reach the file whole lines at a time; a process killed inside a
    ``write`` call (or a full disk) can still leave a truncated last line,
    which :func:`scan` reports.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line (no-op once closed)."""
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")

    def flush(self) -> None:
        """Push buffered records to the file."""
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        """Close the file; later writes are dropped."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


@dataclass
class Scan:
    """What reading one trace file found: its records, with line numbers, and its damage."""

    path: str
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)  # "file:line: why", one per bad line
    cut_bytes: int | None = None  # length of a last line that ends mid-record

    def problems(self, who: str = "a process") -> list[str]:
        """The damage in words: each bad line, then a cut last line with its byte count."""
        problems = list(self.bad_lines)
        if self.cut_bytes is not None:
            problems.append(
                f"{self.path}: last line cut after {self.cut_bytes} bytes ({who} killed "
                f"mid-write?); {len(self.records)} complete record"
                f"{'s' if len(self.records) != 1 else ''} read"
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
    with open(path, "rb") as file:  # bytes: a cut may split a UTF-8 sequence
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
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
            found.records.append((number, record))
    return found


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
