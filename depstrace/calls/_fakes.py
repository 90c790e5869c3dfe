"""mongomock: an in-process MongoDB, recorded as the fake ``mongomock``.

mongomock never reaches pymongo's command monitoring, so its ``Collection``
methods are wrapped; one call of a public method is one operation, named like
the MongoDB command it stands for (``FIND``, ``INSERT``, ...).  mongomock's
methods call each other (``find_one`` calls ``find``): only the outermost
counts.
"""

from __future__ import annotations

import functools
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from depstrace._failopen import report_internal_error
from depstrace.calls import Target, done, note

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry

OPERATIONS = {
    "find": "FIND",
    "find_one": "FIND",
    "insert_one": "INSERT",
    "insert_many": "INSERT",
    "update_one": "UPDATE",
    "update_many": "UPDATE",
    "replace_one": "UPDATE",
    "delete_one": "DELETE",
    "delete_many": "DELETE",
    "find_one_and_delete": "FINDANDMODIFY",
    "find_one_and_replace": "FINDANDMODIFY",
    "find_one_and_update": "FINDANDMODIFY",
    "count_documents": "COUNT",
    "estimated_document_count": "COUNT",
    "distinct": "DISTINCT",
    "aggregate": "AGGREGATE",
    "bulk_write": "BULKWRITE",
    "drop": "DROP",
    "create_index": "CREATEINDEXES",
}

_inside: ContextVar[bool] = ContextVar("depstrace_inside_mongomock", default=False)


def patch_mongomock(patches: PatchRegistry) -> None:
    """Wrap the data methods of ``mongomock.collection.Collection``."""
    from mongomock.collection import Collection

    for name, operation in OPERATIONS.items():
        original = vars(Collection).get(name)
        if callable(original):
            patches.patch(Collection, name, _wrap(original, operation))


def _wrap(original: Any, operation: str) -> Any:
    @functools.wraps(original)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _inside.get():
            return original(self, *args, **kwargs)
        use = None
        try:
            database = self.database
            host, port = database.client.address
            target = Target(
                "mongodb", "mongomock", host, port, database=database.name, fake="mongomock"
            )
            use = note(target, operation)
        except Exception:
            report_internal_error("mongomock probe")
        token = _inside.set(True)
        try:
            return original(self, *args, **kwargs)
        finally:
            _inside.reset(token)
            done(use)

    return method
