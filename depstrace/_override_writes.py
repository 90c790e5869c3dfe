"""Every write to ``app.dependency_overrides``, seen when it happens.

FastAPI reads ``provider.dependency_overrides.get(call, call)`` for every
``Depends`` of every request, so reads must stay C code; writes are rare.  Two
pieces make writes visible and leave reads alone:

- :class:`TrackedOverrides`, a ``dict`` subclass whose *mutators* (item
  assignment, ``del``, ``update``, ``pop``, ``popitem``, ``clear``,
  ``setdefault``, ``|=``) do the plain ``dict`` operation and then tell the
  ledger what changed; ``get``, ``[]`` and ``in`` are ``dict``'s own C methods
  (a subclass only forgoes CPython's exact-``dict`` fast paths: about 10 ns
  per lookup on 3.11, ``benchmarks/override_reads.py``);
- ``__setattr__`` / ``__delattr__`` on the ``FastAPI`` class, which see
  ``app.dependency_overrides = {...}`` (and ``del``), report what it changed
  and store a :class:`TrackedOverrides`.  Attribute *reads* never pass through
  them: CPython keeps specialising ``app.dependency_overrides`` as a plain
  instance attribute load.  (A data descriptor on the class, even one with
  only ``__set__``, would stop that: the read measured 18-35 ns slower on
  Python 3.11 and 3.13, none on 3.10.)

A dict is only replaced by a tracked copy when nothing else can see it: a
fresh ``{...}``, ``.copy()`` or call result (decided by its reference count,
calibrated at install on this interpreter, and by the assigning frame's
locals).  A dict that another name holds (``overrides = {}; app.dependency_overrides
= overrides; overrides[k] = v``) is stored as it is, so its writes still reach
the app; the ledger's snapshots then see what changed in it.  After
:func:`uninstall` every tracked dict behaves as a plain one.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from depstrace._failopen import report_internal_error

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry

NAME = "dependency_overrides"

# Told (app, [(key, value or REMOVED), ...]) after each write that changed anything.
Sink = Callable[[Any, list[tuple[Any, Any]]], None]
REMOVED: Any = object()

_sink: Sink | None = None
_fresh_refs = 0  # what the patched __setattr__ reads as the refcount of a fresh {...}
_sole_refs = 0  # what _refs_in reads for a dict that only its instance holds

F = TypeVar("F", bound=Callable[..., Any])


def _changes(before: dict[Any, Any], after: dict[Any, Any]) -> list[tuple[Any, Any]]:
    """What turned ``before`` into ``after``: new or replaced values, removed keys."""
    changes = [(k, v) for k, v in after.items() if k not in before or before[k] is not v]
    changes += [(k, REMOVED) for k in before if k not in after]
    return changes


def _tell(owners: tuple[weakref.ref[Any], ...], before: dict[Any, Any], after: Any) -> None:
    sink = _sink
    if sink is None:
        return
    try:
        changes = _changes(before, dict(after) if isinstance(after, dict) else {})
        if not changes:
            return
        for owner in owners:
            app = owner()
            if app is not None:
                sink(app, changes)
    except Exception:
        report_internal_error("override write tracking")


def _tracked(method: F) -> F:
    """``method`` (a ``dict`` mutator), then the ledger told what changed, even when it raised."""

    @functools.wraps(method)
    def mutator(self: TrackedOverrides, *args: Any, **kwargs: Any) -> Any:
        if _sink is None:  # uninstrumented: a plain dict
            return method(self, *args, **kwargs)
        before = dict(self)
        try:
            return method(self, *args, **kwargs)
        finally:
            _tell(self._owners, before, self)

    return mutator  # type: ignore[return-value]


class TrackedOverrides(dict[Any, Any]):
    """``app.dependency_overrides`` that tells the override ledger about every write.

    Equal to, and usable as, the plain dict it replaced; copies
    (``.copy()``, ``dict(...)``, ``copy.copy``, pickling) are plain dicts.
    """

    __slots__ = ("_owners",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self, *args, **kwargs)  # dict's own signature: type(d)() still works
        self._owners: tuple[weakref.ref[Any], ...] = ()

    @classmethod
    def of(cls, items: dict[Any, Any], app: Any) -> TrackedOverrides:
        """A tracked copy of ``items`` whose writes are ``app``'s."""
        tracked = cls(items)
        tracked._owners = (weakref.ref(app),)
        return tracked

    __setitem__ = _tracked(dict.__setitem__)
    __delitem__ = _tracked(dict.__delitem__)
    __ior__ = _tracked(dict.__ior__)
    update = _tracked(dict.update)
    pop = _tracked(dict.pop)
    popitem = _tracked(dict.popitem)
    clear = _tracked(dict.clear)
    setdefault = _tracked(dict.setdefault)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))

    def add_owner(self, app: Any) -> None:
        """A second app holds this dict (``b.dependency_overrides = a.dependency_overrides``)."""
        if not any(ref() is app for ref in self._owners):
            self._owners = (*self._owners, weakref.ref(app))

    def drop_owner(self, app: Any) -> None:
        """``app`` holds another dict now: its writes are no longer this dict's."""
        self._owners = tuple(ref for ref in self._owners if ref() not in (app, None))


def _tracking_setattr(original: Callable[[Any, str, Any], None]) -> Callable[..., None]:
    """``FastAPI.__setattr__``: ``original`` for every attribute, reported for ours."""

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if name != NAME:
            original(self, name, value)
            return
        refs = sys.getrefcount(value)  # first: anything below may add references
        if type(self) is _Probe:
            _Probe.seen_refs = refs
            return
        old = getattr(self, NAME, None)
        stored = value
        try:
            stored = _to_store(self, value, old, refs, sys._getframe(1))
        except Exception:
            report_internal_error("override write tracking (reassignment)")
        original(self, NAME, stored)
        # Tracked or not, the app now holds another dict: say what that changed for it.
        _tell((weakref.ref(self),), old if isinstance(old, dict) else {}, stored)

    return __setattr__


def _tracking_delattr(original: Callable[[Any, str], None]) -> Callable[..., None]:
    """``FastAPI.__delattr__``: ``del app.dependency_overrides`` removes every key."""

    def __delattr__(self: Any, name: str) -> None:
        old = getattr(self, NAME, None) if name == NAME else None
        original(self, name)
        if isinstance(old, TrackedOverrides):
            old.drop_owner(self)
        if isinstance(old, dict):
            _tell((weakref.ref(self),), old, {})

    return __delattr__


def _to_store(app: Any, value: Any, old: Any, refs: int, caller: Any) -> Any:
    """The object ``app.dependency_overrides = value`` stores: a tracked dict when safe."""
    if isinstance(old, TrackedOverrides) and old is not value:
        old.drop_owner(app)
    if isinstance(value, TrackedOverrides):  # ``|=``, a restore, or another app's dict
        value.add_owner(app)
        return value
    if _sink is None or type(value) is not dict or refs > _fresh_refs:
        return value
    # Python 3.14 borrows a local's reference on the stack instead of counting it:
    # a dict named by a local of the assigning frame reads as fresh, so look there.
    if any(local is value for local in caller.f_locals.values()):
        return value
    return TrackedOverrides.of(value, app)


def _refs_in(app: Any) -> int:
    """``sys.getrefcount`` of ``app.dependency_overrides`` as read here (calibrated)."""
    value = getattr(app, NAME)
    return sys.getrefcount(value)


def adopt(app: Any) -> bool:
    """Track the overrides of an app created before instrumentation; False if not safe.

    Never touches ``app.__dict__`` (that would move the instance's attributes out
    of CPython's inline values and slow every later attribute read).
    """
    if _sink is None or type(getattr(app, NAME, None)) is not dict:
        return False
    if _refs_in(app) > _sole_refs:  # someone else holds it: replacing it would split them
        return False
    object.__setattr__(app, NAME, TrackedOverrides.of(getattr(app, NAME), app))
    return True


class _Holder:
    """An object whose ``dependency_overrides`` nothing else refers to."""

    dependency_overrides: dict[Any, Any]  # annotation only: no class attribute


class _Probe:
    """Measures what ``__setattr__`` reads as the reference count of a fresh dict."""

    seen_refs = 0
    dependency_overrides: dict[Any, Any]  # annotation only: no class attribute


def _calibrate() -> None:
    """Measure this interpreter's reference counts for dicts nobody else holds."""
    global _fresh_refs, _sole_refs
    probe = _Probe()
    probe.dependency_overrides = {}
    _fresh_refs = _Probe.seen_refs
    holder = _Holder()
    holder.dependency_overrides = {}
    _sole_refs = _refs_in(holder)


def install(patches: PatchRegistry, owner: type, sink: Sink, apps: list[Any]) -> None:
    """Patch ``owner`` (the FastAPI class) to see reassignment, start telling ``sink``,
    and track the overrides of the ``apps`` already known."""
    global _sink
    setattr_ = _tracking_setattr(owner.__setattr__)  # type: ignore[arg-type]
    _Probe.__setattr__ = setattr_  # type: ignore[method-assign]
    try:
        _calibrate()
    finally:
        del _Probe.__setattr__
    patches.patch(owner, "__setattr__", setattr_)
    patches.patch(owner, "__delattr__", _tracking_delattr(owner.__delattr__))  # type: ignore[arg-type]
    _sink = sink
    for app in apps:
        try:
            adopt(app)
        except Exception:
            report_internal_error("override write tracking (adopt)")


def uninstall() -> None:
    """Stop telling anyone: tracked dicts left on apps act as plain dicts."""
    global _sink
    _sink = None
