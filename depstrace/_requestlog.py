"""``TraceSession.requests``: every closed request dict, in order, mostly on disk.

A suite of 100,000 requests would hold about 9 KB per request in memory if
every request dict stayed there (twelve ``Depends`` are twelve dicts of twenty
keys).  :class:`RequestLog` keeps the most recent requests as dicts and moves
older ones to a private spool file, pickled (a third the time of JSON and
half its size, measured in benchmarks/README.md, and exact: a tuple stays a
tuple), keeping only ``(test, offset, length)`` in memory; reading an entry
unpickles it again, equal to the dict that was appended.  The spool holds only
what this process wrote itself, so unpickling it trusts nothing foreign.  The
assertion filters by test first (:meth:`for_test`), so it decodes only the
requests of the test it checks.

The spool is an unnamed temporary file opened when the log is created (at
``instrument()``, before any test can patch what ``tempfile`` uses) and gone
when the process ends.  Fail open: when it cannot be opened or written, the
log keeps dicts in memory, as before.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator, Sequence
from pickle import HIGHEST_PROTOCOL
from pickle import dumps as _dumps  # bound at import: tests may patch pickle's attributes
from pickle import loads as _loads
from typing import IO, Any, overload

from depstrace._failopen import report_internal_error

_TemporaryFile = tempfile.TemporaryFile  # bound at import: tests patch tempfile's attributes
KEEP = 256  # the most recent requests stay dicts (tests read session.requests[-1])

Spooled = tuple[str | None, int, int]  # (test, offset, length) in the spool


class RequestLog(Sequence[dict[str, Any]]):
    """A list-like, append-only (but clearable) sequence of request dicts."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._lock = threading.RLock()
        self._entries: list[dict[str, Any] | Spooled] = []
        self._spooled = 0  # entries before this index are in the spool
        self._end = 0
        self._spool: IO[bytes] | None = self._open()
        self._writable = self._spool is not None
        self._at_end = True  # the spool's position is its end (appends need no seek)
        self.wrong_db = 0  # requests that reached a non-test database (the summary record)

    def __del__(self) -> None:
        spool = getattr(self, "_spool", None)
        if spool is not None:
            spool.close()

    @staticmethod
    def _open() -> IO[bytes] | None:
        try:
            return _TemporaryFile(prefix="depstrace-requests-")
        except Exception:  # no writable temporary directory: keep everything in memory
            report_internal_error("request spool (open)")
            return None

    def append(self, record: dict[str, Any]) -> None:
        """Add ``record`` at the end; the oldest in-memory dict past ``keep`` is spooled."""
        with self._lock:
            self._entries.append(record)
            if record.get("type") == "request" and any(
                not db["is_test"] for db in record["databases"]
            ):
                self.wrong_db += 1
            if self._writable and len(self._entries) - self._spooled > self._keep:
                self._spool_one()

    def _spool_one(self) -> None:
        index = self._spooled
        record = self._entries[index]
        assert isinstance(record, dict)
        spool = self._spool
        assert spool is not None
        try:
            data = _dumps(record, HIGHEST_PROTOCOL)
        except Exception:  # a value that does not pickle: this one stays in memory
            self._spooled = index + 1
            return
        try:
            if not self._at_end:  # a read moved the position (a seek flushes: only then)
                spool.seek(self._end)
                self._at_end = True
            spool.write(data)
        except Exception:
            self._writable = False  # from now on everything stays in memory
            report_internal_error("request spool (write)")
            return
        self._entries[index] = (record.get("test"), self._end, len(data))
        self._end += len(data)
        self._spooled = index + 1

    def _load(self, entry: dict[str, Any] | Spooled) -> dict[str, Any]:
        if isinstance(entry, dict):
            return entry
        _, offset, length = entry
        spool = self._spool
        assert spool is not None  # entries are spooled only while it works
        self._at_end = False
        spool.seek(offset)
        record: dict[str, Any] = _loads(spool.read(length))
        return record

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        with self._lock:
            if isinstance(index, slice):
                return [self._load(entry) for entry in self._entries[index]]
            return self._load(self._entries[index])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RequestLog | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            entries = list(self._entries)
        for start in range(0, len(entries), 512):
            with self._lock:
                chunk = [self._load(entry) for entry in entries[start : start + 512]]
            yield from chunk

    def for_test(self, nodeid: str | None) -> list[dict[str, Any]]:
        """The requests of test ``nodeid``, decoding only those."""
        with self._lock:
            return [
                self._load(entry)
                for entry in self._entries
                if (entry.get("test") if isinstance(entry, dict) else entry[0]) == nodeid
            ]

    def clear(self) -> None:
        """Forget every request (a forked child starts its own log: a fresh spool,
        since the parent's file descriptor is shared)."""
        with self._lock:
            if self._spool is not None:
                self._spool.close()
            self._entries = []
            self._spooled = self._end = self.wrong_db = 0
            self._spool = self._open()
            self._writable = self._spool is not None
            self._at_end = True

    def __repr__(self) -> str:
        spooled = sum(not isinstance(entry, dict) for entry in self._entries)
        return f"<RequestLog {len(self)} requests, {spooled} spooled>"
