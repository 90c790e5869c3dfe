"""Which requests and findings ``depstrace report --test/--code/--db`` keeps.

Each option may repeat; a record is kept when it matches one value of every
option given.  A finding tied to no request is judged by its own test, code
and database (``url``, ``engine_id``).
"""

from __future__ import annotations

import fnmatch
import glob
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from depstrace._testdb import TestDatabaseRule
from depstrace.findings import EXTERNAL_CALL

Record = dict[str, Any]


def nodeid_matches(nodeid: str | None, pattern: str) -> bool:
    """``tests/test_a.py`` keeps every test of that file (and ``tests/`` every test below
    it), ``tests/test_a.py::test_x`` that test and its parameters; a pattern with
    ``*?[`` is an fnmatch glob over the whole node id."""
    if nodeid is None:
        return False
    if glob.has_magic(pattern):
        return fnmatch.fnmatchcase(nodeid, pattern)
    below = pattern if pattern.endswith("/") else pattern + "/"
    return nodeid == pattern or nodeid.startswith((pattern + "::", pattern + "[", below))


@dataclass(frozen=True)
class Selection:
    """The filters of one ``depstrace report``; call it on a request or finding record."""

    tests: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    databases: tuple[TestDatabaseRule, ...] = ()
    engine_ids: tuple[str, ...] = ()  # the --db values, also taken as engine ids (e3)

    @classmethod
    def build(
        cls, tests: Sequence[str], codes: Sequence[str], databases: Sequence[str]
    ) -> Selection | None:
        """The selection of these option values; None when no filter was given.

        Raises ValueError for a ``--db`` pattern the test-database syntax rejects.
        """
        if not (tests or codes or databases):
            return None
        rules = tuple(TestDatabaseRule(value, source="--db") for value in databases)
        return cls(tuple(tests), tuple(codes), rules, tuple(databases))

    def __call__(self, record: Record) -> bool:
        """Whether ``record`` (``request``, ``finding``, ``guard`` or ``outside_calls``)
        passes every filter given."""
        if self.tests and not any(nodeid_matches(record.get("test"), p) for p in self.tests):
            return False
        if record["type"] == "request":
            codes = {f["code"] for f in record["findings"]}
            places = [(db["url"], db["engine_id"]) for db in record["databases"]]
        elif record["type"] == "guard":  # what explained the refusal
            codes = {f["code"] for f in record.get("findings") or ()}
            places = [(record.get("url"), record.get("engine_id"))]
        elif record["type"] == "outside_calls":  # no database: only --test keeps them
            codes = {EXTERNAL_CALL} if any(not c["allowed"] for c in record["calls"]) else set()
            places = []
        else:
            codes = {record["code"]}
            places = [(record.get("url"), record.get("engine_id"))]
        if self.codes and codes.isdisjoint(self.codes):
            return False
        return not self.databases or any(self._db_matches(url, ident) for url, ident in places)

    def _db_matches(self, url: str | None, engine_id: str | None) -> bool:
        if engine_id is not None and engine_id in self.engine_ids:
            return True
        return url is not None and any(rule.matches(url) for rule in self.databases)
