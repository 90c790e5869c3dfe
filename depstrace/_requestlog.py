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

The spool is an unnamed, unbuffered temporary file opened when the log is
created (at ``instrument()``, before any test can patch what ``tempfile``
uses) and gone when the process ends.  Pickles are batched in memory and
written with ``os.pwrite`` at their own offsets, read with ``os.pread``: a
forked child (the launcher's workers) shares the file's position with its
parent, so nothing relies on it, and an unbuffered file has no buffer a
child's ``close`` could flush into the parent's file.  Fail open: when the
spool cannot be opened or written, what it would hold stays in memory.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pickle import HIGHEST_PROTOCOL
from pickle import dumps as _dumps  # bound at import: tests may patch pickle's attributes
from pickle import loads as _loads
from typing import IO, Any, overload

from depstrace._failopen import report_internal_error

# Bound at import: tests patch tempfile's and os's attributes.
_TemporaryFile = tempfile.TemporaryFile
_pwrite = getattr(os, "pwrite", None)  # not on Windows: there the log stays in memory
_pread = getattr(os, "pread", None)
KEEP = 256  # the most recent requests stay dicts (tests read session.requests[-1])
BATCH = 1 << 18  # bytes of pickles gathered before one pwrite

Spooled = tuple[str | None, int, int]  # (test, offset, length) in the spool


class RequestLog(Sequence[dict[str, Any]]):
    """A list-like, append-only (but clearable) sequence of request dicts."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._lock = threading.RLock()
        self._entries: list[dict[str, Any] | Spooled] = []
        self._spooled = 0  # entries before this index are spooled (or would not pickle)
        self._end = 0  # offset of the next pickle
        self._written = 0  # bytes on disk; pickles from here to _end are in _pending
        self._pending: list[bytes] = []
        self._spool: IO[bytes] | None = self._open()
        self._writable = self._spool is not None
        self.wrong_db = 0  # requests that reached a non-test database (the summary record)

    def __del__(self) -> None:
        spool = getattr(self, "_spool", None)
        if spool is not None:
            spool.close()

    @staticmethod
    def _open() -> IO[bytes] | None:
        if _pwrite is None or _pread is None:
            return None
        try:
            return _TemporaryFile(buffering=0, prefix="depstrace-requests-")
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
        self._spooled = index + 1
        record = self._entries[index]
        assert isinstance(record, dict)
        try:
            data = _dumps(record, HIGHEST_PROTOCOL)
        except Exception:  # a value that does not pickle: this one stays in memory
            return
        self._entries[index] = (record.get("test"), self._end, len(data))
        self._pending.append(data)
        self._end += len(data)
        if self._end - self._written >= BATCH:
            self._write_pending()

    def _write_pending(self) -> None:
        """Write the batch at its offset; on failure it stays in memory for good."""
        if not self._pending or not self._writable:
            return
        spool = self._spool
        assert spool is not None
        assert _pwrite is not None
        data = b"".join(self._pending)
        try:
            done = 0
            while done < len(data):
                done += _pwrite(spool.fileno(), data[done:], self._written + done)
        except Exception:
            self._writable = False  # later records stay dicts; the batch stays readable
            self._pending = [data]
            report_internal_error("request spool (write)")
            return
        self._pending = []
        self._written = self._end

    def _load(self, entry: dict[str, Any] | Spooled) -> dict[str, Any]:
        if isinstance(entry, dict):
            return entry
        _, offset, length = entry
        if offset >= self._written:  # still in the batch: write it (one pwrite) first
            self._write_pending()
        if offset >= self._written:  # writing failed: the batch is one bytes object
            start = offset - self._written
            data = self._pending[0][start : start + length]
        else:
            spool = self._spool
            assert spool is not None
            assert _pread is not None
            data = b""
            while len(data) < length:
                chunk = _pread(spool.fileno(), length - len(data), offset + len(data))
                if not chunk:
                    raise OSError(f"depstrace request spool: {length} bytes at {offset} are gone")
                data += chunk
        record: dict[str, Any] = _loads(data)
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
                self._spool.close()  # unbuffered: closing writes nothing
            self._entries, self._pending = [], []
            self._spooled = self._end = self._written = self.wrong_db = 0
            self._spool = self._open()
            self._writable = self._spool is not None

    def __repr__(self) -> str:
        spooled = sum(not isinstance(entry, dict) for entry in self._entries)
        return f"<RequestLog {len(self)} requests, {spooled} spooled>"
