"""Lookalike override keys: why an unused override key resembles a used dependency.

FastAPI finds an override with ``dependency_overrides.get(call, call)``, a dict
lookup: the key must hash and compare equal to the very object the route put in
``Depends(...)``.  The classic leak (fastapi#3588, fastapi-sqla PR 105) is a key
that is *another object that looks the same*: the function of a reloaded module
or of one file imported under two module names, a ``functools.wraps`` wrapper, a
class-instance dependency created twice.  Nothing fails; the override is simply
never consulted.  :func:`why_alike` puts the resemblance into words so a finding
(``OVERRIDE_IDENTITY_MISMATCH``) can name both objects and say why they were
confused.

It is asked about every (unused override key x dependency) pair when a request
closes, so the traits of each object are computed once and each pair's answer
is cached.  Both caches hold strong references, so an ``id()`` is never reused
while it is a cache key.  Nothing here raises: a failure means "no lookalike".
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

from depstrace._callables import describe, shorten_path, wrapped_chain

__all__ = ["clear_cache", "label", "origin", "why_alike"]

_CACHE_LIMIT = 4096
_UNSET = object()  # a declared but unset __slots__ attribute


@dataclass(frozen=True)
class _Traits:
    """What two objects are compared on, computed once per object."""

    kind: str  # function, class, method, partial, instance, other
    name: str | None  # "module:qualname" of a function or class
    namespace: int | None  # id() of a function's module globals (the module object)
    code: Any  # a function's code object
    code_site: str | None  # "file:line" of that code
    file: str | None  # a class's module file
    wrapped: tuple[Any, ...]  # the __wrapped__ chain, outermost first, without the object


_traits: dict[int, tuple[object, _Traits]] = {}
_pairs: dict[tuple[int, int], tuple[object, object, str | None]] = {}


def why_alike(key: object, used: object) -> str | None:
    """Why override key ``key`` (not identical to ``used``) looks like the dependency
    callable ``used`` a route uses, in words for a message, or None when it doesn't.

    Reasons, most specific first: a ``functools.wraps`` relation, equal
    ``functools.partial`` objects, the same module and qualname (a reload or a
    second import), the same code location (one file under two module names),
    an equal instance or another instance of the same class with the same
    attributes, a class key for an instance dependency (or the reverse).
    """
    if key is used:
        return None
    pair = (id(key), id(used))
    hit = _pairs.get(pair)
    if hit is not None and hit[0] is key and hit[1] is used:
        return hit[2]
    try:
        reason = _why(key, used, depth=0)
    except Exception:  # user __eq__ / __getattr__ may do anything; no answer then
        reason = None
    if len(_pairs) >= _CACHE_LIMIT:
        _pairs.clear()
    _pairs[pair] = (key, used, reason)
    return reason


def origin(obj: object) -> str | None:
    """``file:line`` where ``obj`` (a function, class, instance or partial) was defined."""
    try:
        return describe(obj).site
    except Exception:
        return None


def label(obj: object) -> str:
    """``module:qualname`` of ``obj`` (``module:Class()`` for an instance)."""
    try:
        return describe(obj).qualname
    except Exception:
        return f"{type(obj).__module__}:{type(obj).__qualname__}()"


def clear_cache() -> None:
    """Forget every cached object and answer (drops the strong references)."""
    _traits.clear()
    _pairs.clear()


# --- traits -----------------------------------------------------------------------


def _traits_of(obj: Any) -> _Traits:
    hit = _traits.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    traits = _compute(obj)
    if len(_traits) >= _CACHE_LIMIT:
        _traits.clear()
    _traits[id(obj)] = (obj, traits)
    return traits


def _compute(obj: Any) -> _Traits:
    name = namespace = code = code_site = file = None
    if isinstance(obj, functools.partial):
        kind = "partial"
    elif inspect.ismethod(obj):
        kind = "method"
    elif inspect.isclass(obj):
        kind = "class"
        name = _name(obj)
        module = inspect.getmodule(obj)
        module_file = getattr(module, "__file__", None)
        file = module_file if isinstance(module_file, str) else None
    elif inspect.isfunction(obj):
        kind = "function"
        name = _name(obj)
        namespace = id(obj.__globals__)
        code = obj.__code__
        code_site = f"{shorten_path(code.co_filename)}:{code.co_firstlineno}"
    elif inspect.isbuiltin(obj):
        kind = "function"
        name = _name(obj)
    elif callable(obj):
        kind = "instance"
    else:
        kind = "other"
    return _Traits(kind, name, namespace, code, code_site, file, wrapped_chain(obj))


def _name(obj: Any) -> str | None:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}:{qualname}"
    return None


# --- comparison ---------------------------------------------------------------------


def _why(key: Any, used: Any, depth: int) -> str | None:
    if depth > 2:  # partial of a method of an instance...: deep enough
        return None
    k, u = _traits_of(key), _traits_of(used)
    reason = _wraps(key, used, k, u, depth)
    if reason is None and k.kind == u.kind:
        if k.kind == "partial":
            reason = _partials(key, used, depth)
        elif k.kind == "method":
            reason = _methods(key, used, depth)
        elif k.kind in ("function", "class"):
            reason = _same_name(k, u) or _same_place(k, u)
        elif k.kind == "instance":
            reason = _instances(key, used, depth)
    elif reason is None and k.kind == "class" and type(used) is key:
        reason = f"the key is the class {k.name}; the route uses an instance of it"
    elif reason is None and u.kind == "class" and type(key) is used:
        reason = f"the key is an instance of {u.name}; the route uses the class itself"
    return reason


def _wraps(key: Any, used: Any, k: _Traits, u: _Traits, depth: int) -> str | None:
    if any(inner is used for inner in k.wrapped):
        return f"{_pair(key, used)[0]} wraps {_pair(key, used)[1]} (functools.wraps)"
    if any(inner is key for inner in u.wrapped):
        return f"{_pair(key, used)[1]} wraps {_pair(key, used)[0]} (functools.wraps)"
    if k.wrapped and u.wrapped:
        inner_ids = {id(inner) for inner in u.wrapped}
        for inner in k.wrapped:
            if id(inner) in inner_ids:
                return f"both wrap {label(inner)}"
        # Decorated functions of a reloaded module: the wrappers share the decorator's
        # code, so what tells is what they wrap.
        inner_reason = _why(k.wrapped[-1], u.wrapped[-1], depth + 1)
        if inner_reason is not None:
            return f"both wrap lookalikes: {inner_reason}"
    return None


def _pair(key: Any, used: Any) -> tuple[str, str]:
    """Labels for both, with the definition site when the names alone are equal."""
    key_label, used_label = label(key), label(used)
    if key_label == used_label:
        key_label = f"{key_label} ({origin(key) or 'site unknown'})"
        used_label = f"{used_label} ({origin(used) or 'site unknown'})"
    return key_label, used_label


def _partials(key: Any, used: Any, depth: int) -> str | None:
    if not (_equal(key.args, used.args) and _equal(key.keywords, used.keywords)):
        return None
    if key.func is used.func:
        return f"an equal functools.partial of {label(key.func)}"
    inner = _why(key.func, used.func, depth + 1)
    if inner is None:
        return None
    return f"functools.partial objects with equal arguments of lookalike callables: {inner}"


def _methods(key: Any, used: Any, depth: int) -> str | None:
    if key.__func__ is used.__func__:
        func_reason = None
    else:
        func_reason = _why(key.__func__, used.__func__, depth + 1)
        if func_reason is None:
            return None
    if key.__self__ is used.__self__:
        self_reason = None
    else:
        self_reason = _why(key.__self__, used.__self__, depth + 1)
        if self_reason is None:
            return None
    name = _name(key.__func__) or label(key)
    parts = [f"bound method {name}"]
    if self_reason is not None:
        parts.append(f"of {self_reason}")
    if func_reason is not None:
        parts.append(f"(its function: {func_reason})")
    return " ".join(parts)


def _same_name(k: _Traits, u: _Traits) -> str | None:
    # "<lambda>" names say nothing: two lambdas of one module are alike only by site.
    if k.name is None or k.name != u.name or "<lambda>" in k.name:
        return None
    if k.kind == "class":
        return f"same module and qualname ({k.name}): a reloaded module or a second import"
    if k.namespace is not None and k.namespace != u.namespace:
        return (
            f"same module and qualname ({k.name}) from two module objects: "
            "a reloaded module or a second import"
        )
    if k.code is not None and k.code is u.code:
        return (
            f"same module and qualname ({k.name}) and the same code: two function "
            "objects made by one definition (a factory called twice?)"
        )
    return (
        f"same module and qualname ({k.name}), defined again in the same module "
        "(importlib.reload does that)"
    )


def _same_place(k: _Traits, u: _Traits) -> str | None:
    if k.code_site is not None and k.code_site == u.code_site:
        return f"same code location ({k.code_site}), imported as {k.name} and {u.name}"
    if k.kind == "class" and k.file is not None and k.file == u.file:
        key_qualname = (k.name or "").partition(":")[2]
        if key_qualname and key_qualname == (u.name or "").partition(":")[2]:
            return (
                f"same class in the same file ({shorten_path(k.file)}), "
                f"imported as {k.name} and {u.name}"
            )
    return None


def _instances(key: Any, used: Any, depth: int) -> str | None:
    kind = type(key)
    kind_label = _name(kind) or kind.__qualname__
    if _equal(key, used):
        return f"an equal instance of {kind_label}"
    if type(used) is kind:
        class_reason = None
    else:
        class_reason = _why(kind, type(used), depth + 1)
        if class_reason is None:
            return None
    key_state, used_state = _state(key), _state(used)
    if key_state is None or used_state is None or not _equal(key_state, used_state):
        return None
    if class_reason is None:
        return f"another instance of {kind_label} with the same attributes"
    return f"an instance with the same attributes of a lookalike class: {class_reason}"


def _state(obj: Any) -> dict[str, Any] | None:
    """The instance attributes (``__dict__`` plus ``__slots__``), or None."""
    state: dict[str, Any] = {}
    found = False
    try:
        state.update(vars(obj))
        found = True
    except TypeError:
        pass
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            found = True
            try:
                state[slot] = object.__getattribute__(obj, slot)
            except AttributeError:
                state[slot] = _UNSET
    return state if found else None


def _equal(a: Any, b: Any) -> bool:
    """``a == b`` that is True only for a real ``True`` and never raises."""
    try:
        return (a == b) is True
    except Exception:
        return False
