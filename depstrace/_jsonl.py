"""Writing and reading the JSON Lines trace (docs/format.md)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class JsonlWriter:
    """Appends one JSON object per line; thread-safe; buffered.

    The buffer is flushed by :meth:`flush` (after every test) and on close, not
    per record: a ``write`` syscall per request was most of depstrace's cost.
    A run killed mid-buffer leaves a truncated last line, which readers skip.
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
