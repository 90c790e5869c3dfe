"""Per-callable metadata (name, definition site, how FastAPI runs it), cached.

Computed once per callable object and kept in an identity-keyed cache: the
solver asks for it on every ``Depends`` of every request, so the second lookup
must be one dict access.  Identity matters: two equal-but-distinct class
instances are two dependencies to FastAPI, and must stay two here.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from os import getcwd as _getcwd
from os import sep as _sep
from os.path import isabs as _isabs
from os.path import join as _join
from os.path import normpath as _normpath
from typing import Any

_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class CallableInfo:
    """What depstrace records about one dependency callable."""

    qualname: str  # "module:qualname", "module:Class()" for an instance
    site: str | None  # "file:line" where it was defined, when known
    kind: str  # how FastAPI runs it: async, sync, generator, async_generator
    callable_type: str  # function, method, class, instance, partial, other


_cache: dict[int, tuple[object, CallableInfo]] = {}


def describe(call: object) -> CallableInfo:
    """Return the cached :class:`CallableInfo` for ``call`` (computed on first use)."""
    hit = _cache.get(id(call))
    if hit is not None and hit[0] is call:
        return hit[1]
    info = _compute(call)
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    # The strong reference keeps id(call) from being reused while cached.
    _cache[id(call)] = (call, info)
    return info


def clear_cache() -> None:
    """Forget all cached metadata (used by uninstrument)."""
    _cache.clear()


def _unwrap_partial(call: Any) -> Any:
    while isinstance(call, functools.partial):
        call = call.func
    return call


def _compute(call: object) -> CallableInfo:
    target = _unwrap_partial(call)
    if isinstance(call, functools.partial):
        callable_type = "partial"
    elif inspect.isclass(target):
        callable_type = "class"
    elif inspect.ismethod(target):
        callable_type = "method"
    elif inspect.isfunction(target) or inspect.isbuiltin(target):
        callable_type = "function"
    elif callable(target):
        callable_type = "instance"
    else:
        callable_type = "other"
    return CallableInfo(
        qualname=_qualname(target, instance=callable_type == "instance"),
        site=_site(target),
        kind=_kind(target),
        callable_type=callable_type,
    )


def _qualname(target: Any, *, instance: bool) -> str:
    owner = type(target) if instance else target
    module = getattr(owner, "__module__", None) or "?"
    name = getattr(owner, "__qualname__", None) or getattr(owner, "__name__", None)
    if name is None:
        return f"{module}:{type(target).__qualname__}()"
    return f"{module}:{name}()" if instance else f"{module}:{name}"


def _kind(target: Any) -> str:
    # Mirrors fastapi.dependencies.utils.is_*_callable: a class is instantiated
    # in the threadpool; an instance is judged by its __call__.
    if inspect.isclass(target):
        return "sync"
    # The __call__ *function* is what tells async from sync, not callability.
    fn = target if inspect.isroutine(target) else getattr(type(target), "__call__", target)  # noqa: B004
    fn = inspect.unwrap(_unwrap_partial(fn)) if callable(fn) else fn
    if inspect.isasyncgenfunction(fn):
        return "async_generator"
    if inspect.isgeneratorfunction(fn):
        return "generator"
    if inspect.iscoroutinefunction(fn):
        return "async"
    return "sync"


def _site(target: Any) -> str | None:
    fn = target
    if inspect.ismethod(fn):
        fn = fn.__func__
    code = getattr(fn, "__code__", None)
    if code is None and not inspect.isclass(target) and callable(target):
        call = getattr(type(target), "__call__", None)  # noqa: B004 - the method, for its code
        code = getattr(call, "__code__", None)
    if code is not None:
        return f"{shorten_path(code.co_filename)}:{code.co_firstlineno}"
    if inspect.isclass(target):
        try:
            file = inspect.getsourcefile(target)
            _, line = inspect.getsourcelines(target)
        except (OSError, TypeError):
            return None
        return f"{shorten_path(file)}:{line}" if file else None
    return None


@functools.lru_cache(maxsize=1024)
def shorten_path(path: str) -> str:
    """Show ``path`` relative to the working directory when it lies below it.

    String work on functions bound at import: ``os.path.relpath`` would call
    ``os.getcwd`` and ``os.path.abspath`` through attributes tests patch.
    """
    cwd = _getcwd()
    full = _normpath(path if _isabs(path) else _join(cwd, path))
    prefix = cwd if cwd.endswith(_sep) else cwd + _sep
    return full[len(prefix) :] if full.startswith(prefix) else path
