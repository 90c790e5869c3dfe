"""Databases used without SQLAlchemy: MongoDB (pymongo, motor) and asyncpg/psycopg.

Each store gets an :class:`~depstrace._records.EngineInfo` from the shared
engine registry (ids continue the ``e1, e2, ...`` sequence), and every command
or statement is counted on the running request exactly like a SQLAlchemy
statement, so the same test-database rule and the same findings apply.

Importing depstrace must stay cheap and must not import the drivers (together
they take most of a second to import).  :func:`install` therefore instruments a
driver at once only when it is already imported; otherwise a meta path finder
waits for its import and instruments it right after the module has executed,
before any user code can open a client or connection with it.  Patches applied
that late still go through the session's :class:`~depstrace._patching.PatchRegistry`,
so ``uninstrument()`` undoes them like any other.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from depstrace import _order, guard
from depstrace import sqlalchemy as _sqlalchemy
from depstrace._failopen import report_internal_error
from depstrace.sqlalchemy import attribute

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry
    from depstrace._records import EngineInfo

__all__ = ["install", "instrumented_drivers", "note", "uninstall"]

OutsideSink = Callable[["EngineInfo", str], None]

_outside_sink: OutsideSink | None = None
_watcher: _ImportWatcher | None = None
_instrumented: set[str] = set()


def note(info: EngineInfo, operation: str) -> None:
    """Count one statement (or MongoDB command) on ``info``: on the running
    request, else as a statement outside any request.  The hot path; it does
    what the SQLAlchemy listener does, so findings read the same."""
    attribute(info, operation, _outside_sink)


def instrumented_drivers() -> frozenset[str]:
    """The drivers (``pymongo``, ``asyncpg``, ``psycopg``) and client libraries
    (``httpx``, ``requests``, ``redis``, ``redis.asyncio``, ``botocore.client``,
    ``mongomock``: docs/calls.md) instrumented right now."""
    return frozenset(_instrumented)


def install(patches: PatchRegistry, outside_sink: OutsideSink) -> None:
    """Instrument every supported driver that is imported, and any imported later."""
    global _outside_sink, _watcher
    from depstrace import calls
    from depstrace.stores import mongo, pgdrivers

    _outside_sink = outside_sink
    if _choose_extractor not in _sqlalchemy.store_choosers:
        _sqlalchemy.store_choosers.append(_choose_extractor)
    later: Callable[[], None] = functools.partial(mongo.attach, existing_clients=False)
    mongo_now: Callable[[], None] = mongo.attach  # later: no client exists yet
    if guard.mode() != "off":  # and only then: pymongo's hot path stays untouched
        mongo_now = _both(mongo.attach, functools.partial(mongo.guard_commands, patches))
        later = _both(later, functools.partial(mongo.guard_commands, patches))
    hooks: list[tuple[str, Callable[[], None], Callable[[], None] | None]] = [
        ("pymongo", mongo_now, later),
        ("asyncpg", functools.partial(pgdrivers.patch_asyncpg, patches), None),
        ("psycopg", functools.partial(pgdrivers.patch_psycopg, patches), None),
        *calls.hooks(patches),  # outbound HTTP, AWS, Redis, fakes (docs/calls.md)
        # not a store: settings objects, for order effects (depstrace._order)
        ("pydantic_settings", functools.partial(_order.install, patches), None),
    ]
    waiting: dict[str, Callable[[], None]] = {}
    for name, now, on_import in hooks:
        if name in sys.modules:
            _run(name, now)
        else:
            waiting[name] = on_import or now
    if waiting:
        _watcher = _ImportWatcher(waiting)
        sys.meta_path.insert(0, _watcher)


def uninstall() -> None:
    """Stop watching imports and forget per-store state (patches are undone by the registry)."""
    global _outside_sink, _watcher
    from depstrace import calls
    from depstrace.stores import mongo, pgdrivers

    calls.stop()
    if _watcher is not None:
        with contextlib.suppress(ValueError):  # somebody rebuilt sys.meta_path meanwhile
            sys.meta_path.remove(_watcher)
        _watcher = None
    mongo.detach()
    pgdrivers.forget()
    _order.uninstall()
    _instrumented.clear()
    _outside_sink = None
    while _choose_extractor in _sqlalchemy.store_choosers:
        _sqlalchemy.store_choosers.remove(_choose_extractor)


def _both(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        first()
        second()

    return run


def _run(name: str, hook: Callable[[], None]) -> None:
    try:
        hook()
        _instrumented.add(name)
    except Exception:  # a driver version we do not understand: trace the rest
        report_internal_error(f"instrumenting {name}")


def _choose_extractor(kind: type) -> Callable[[Any], Any] | None:
    """For :func:`depstrace.sqlalchemy.engine_of`: how to find the store behind a
    dependency value of type ``kind`` (a pymongo ``Database``, an asyncpg
    ``Pool``, ...), or None when ``kind`` belongs to no supported driver."""
    root = kind.__module__.partition(".")[0]
    if root in ("pymongo", "motor"):
        from depstrace.stores import mongo

        return mongo.extractor(kind)
    if root in ("asyncpg", "psycopg"):
        from depstrace.stores import pgdrivers

        return pgdrivers.extractor(kind)
    return None


class _ImportWatcher(importlib.abc.MetaPathFinder):
    """Runs a hook right after a watched top-level module has been imported.

    It finds nothing itself: it asks the finders after it for the module's spec
    and wraps the spec's loader, so the hook runs once ``exec_module`` returns.
    Each hook runs once; a failed import leaves it waiting.
    """

    def __init__(self, hooks: dict[str, Callable[[], None]]) -> None:
        self.hooks = hooks

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        hook = self.hooks.get(fullname)
        if hook is None:
            return None
        try:
            for finder in list(sys.meta_path):
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
            loader = spec.loader
            if loader is None or not hasattr(loader, "exec_module"):
                return spec
            spec.loader = _HookedLoader(loader, fullname, self)
            return spec
        except Exception:  # never break an import: let the normal machinery run
            report_internal_error(f"import watcher ({fullname})")
            return None

    def fire(self, fullname: str) -> None:
        """``fullname`` finished importing: run its hook once."""
        hook = self.hooks.pop(fullname, None)
        if hook is not None:
            _run(fullname, hook)


class _HookedLoader(importlib.abc.Loader):
    """Delegates to the real loader, then tells the watcher the module is ready."""

    def __init__(self, loader: Any, fullname: str, watcher: _ImportWatcher) -> None:
        self._loader = loader
        self._fullname = fullname
        self._watcher = watcher

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        # The module must see its own loader (importlib.resources asks it), not us.
        spec = module.__spec__
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        self._loader.exec_module(module)
        if _watcher is self._watcher:  # still instrumented
            self._watcher.fire(self._fullname)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
