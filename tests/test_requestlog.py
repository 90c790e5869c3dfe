"""depstrace._requestlog: request dicts moved to the spool read back equal, in order."""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest

from depstrace import _failopen, _requestlog
from depstrace._requestlog import RequestLog


def request(number: int, test: str | None, *, is_test: bool = True) -> dict[str, Any]:
    """A request dict shaped like the ones the session appends."""
    return {
        "type": "request",
        "id": f"r{number}",
        "test": test,
        "path": "/caf\u00e9",  # not ASCII: offsets count bytes
        "databases": [{"url": "sqlite:///x.db", "is_test": is_test, "statements": number}],
        "dependencies": [{"id": 0, "name": "db", "duration_ms": 0.1 * number, "alias": None}],
        "findings": [],
    }


def test_spooled_requests_read_back_equal() -> None:
    """With two kept in memory, the other eight come back from the spool equal and in
    order, through iteration, indexing, slices and ``for_test``."""
    log = RequestLog(keep=2)
    records = [request(n, f"t.py::t{n % 3}", is_test=n != 4) for n in range(10)]
    for record in records:
        log.append(record)
    assert repr(log) == "<RequestLog 10 requests, 8 spooled>"
    assert list(log) == records
    assert log == records
    assert (log[0], log[-1], log[3:5]) == (records[0], records[-1], records[3:5])
    assert log.for_test("t.py::t1") == [records[1], records[4], records[7]]
    assert log.wrong_db == 1


def test_clear_starts_afresh() -> None:
    """``clear`` (a forked child) forgets everything and spools into a new file."""
    log = RequestLog(keep=1)
    for n in range(3):
        log.append(request(n, None))
    log.clear()
    assert (len(log), bool(log), log.wrong_db) == (0, False, 0)
    log.append(request(7, None))
    log.append(request(8, None))
    assert list(log) == [request(7, None), request(8, None)]


def test_appends_after_reads_land_at_the_end() -> None:
    """Reading an old entry moves the spool's position; the next spooled entry still
    goes to the end, so every entry reads back as appended."""
    log = RequestLog(keep=1)
    records = [request(n, None) for n in range(6)]
    for record in records[:3]:
        log.append(record)
    assert log[0] == records[0]
    for record in records[3:]:
        log.append(record)
        assert log[1] == records[1]
    assert list(log) == records


def test_read_back_is_exact_and_unpicklable_values_stay_in_memory() -> None:
    """A tuple comes back a tuple; a record holding something that does not pickle
    stays in memory, and the ones after it are still spooled."""
    log = RequestLog(keep=1)
    exact = request(1, None) | {"alias": ("ref", None)}
    odd = request(2, None) | {"value": lambda: None}
    for record in (exact, odd, request(3, None), request(4, None)):
        log.append(record)
    assert log[0] == exact
    assert isinstance(log[0]["alias"], tuple)
    assert log[1] is odd
    assert log[2] == request(3, None)
    assert repr(log) == "<RequestLog 4 requests, 2 spooled>"


def test_a_failed_write_keeps_every_record_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the spool cannot be written, the batch stays in memory, later records stay
    dicts, every record still reads back, and the fault is counted once."""

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_requestlog, "BATCH", 1)  # every pickle is written at once
    log = RequestLog(keep=1)
    records = [request(n, None) for n in range(5)]
    log.append(records[0])
    log.append(records[1])  # spools records[0]: written
    _failopen.reset()
    monkeypatch.setattr(_requestlog, "_pwrite", full)
    for record in records[2:]:
        log.append(record)  # records[1] fails to be written; the rest stay dicts
    assert list(log) == records
    assert dict(_failopen.internal_errors) == {"request spool (write)": 1}
    _failopen.reset()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_leaves_the_parents_spool_alone() -> None:
    """A child that clears its log and spools its own records (the launcher's forked
    workers) changes nothing the parent reads back."""
    log = RequestLog(keep=1)
    records = [request(n, "parent") for n in range(4)]
    for record in records:
        log.append(record)
    assert log[0] == records[0]  # written: the child shares the file
    with warnings.catch_warnings():  # 3.12+: "multi-threaded, fork() may deadlock" (xdist)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its own records, then exit without pytest's cleanup
        try:
            log.clear()
            for n in range(50):
                log.append(request(n, "child"))
            code = 0 if log[10] == request(10, "child") else 1
        finally:
            os._exit(locals().get("code", 2))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log.append(request(9, "parent"))
    assert list(log) == [*records, request(9, "parent")]
