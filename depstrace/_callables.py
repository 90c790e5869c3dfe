"""Per-callable metadata (name, definition site, how FastAPI runs it), cached.

Computed once per callable object and kept in an identity-keyed cache: the
solver asks for it on every ``Depends`` of every request, so the second lookup
must be one dict access.  Identity matters: two equal-but-distinct class
instances are two dependencies to FastAPI, and must stay two here.

Names that point at the object (issue 9): a ``functools.wraps`` wrapper copies
``__module__`` and ``__qualname__`` from the function it wraps, so its
``module:qualname`` names *another object*.  :class:`CallableInfo` therefore
also says whether that name finds the object itself (``exact``), a dotted
``ref`` (``module.attribute``) that does, the innermost callable it wraps, and a
site in the user's own file: wrappers whose code lives in a library
(``contextlib.contextmanager``, ``functools.lru_cache``, a decorator from
site-packages) are followed through ``__wrapped__`` to the first function
defined outside the standard library and site-packages.  How ``ref`` is found,
in order (docs/format.md, "Names"):

1. the callable's own ``__module__`` + ``__qualname__``, when that attribute path
   is this very object (plain functions, classes, decorators applied in place);
2. a global of the module whose code defines it (a ``@functools.wraps`` wrapper
   written inline, a partial made next to its function);
3. a global of the module whose code wrote the ``Depends(...)`` (the endpoint's
   or parent dependency's module), or an attribute of a module that module
   imported (``Depends(deps.get_db)``): :func:`ref_in`, cached per
   (callable, module).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import sysconfig
from dataclasses import dataclass
from os import fspath as _fspath
from os import getcwd as _getcwd
from os import sep as _sep
from os.path import isabs as _isabs
from os.path import join as _join
from os.path import normpath as _normpath
from types import CodeType, ModuleType
from typing import Any

_CACHE_LIMIT = 4096
_MAX_WRAPPED = 64  # a __wrapped__ chain longer than this is a loop or a proxy
_MAX_MODULE_GLOBALS = 64  # imported modules looked into for a ``Depends(module.name)``


@dataclass(frozen=True)
class CallableInfo:
    """What depstrace records about one dependency callable."""

    qualname: str  # "module:qualname", "module:Class()" for an instance
    site: str | None  # "file:line" where it was defined (the first user file), when known
    kind: str  # how FastAPI runs it: async, sync, generator, async_generator
    callable_type: str  # function, method, class, instance, partial, other
    exact: bool = False  # ``qualname`` is an attribute path to this very object
    ref: str | None = None  # "module.attribute" that is this object, found without context
    wraps: str | None = None  # "module:qualname" of the innermost callable it wraps
    wraps_site: str | None = None  # where that one was defined
    home: str | None = None  # the module whose code defines it (where its Depends are written)


_cache: dict[int, tuple[object, CallableInfo]] = {}
_context_refs: dict[tuple[int, str], tuple[object, str | None]] = {}


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


def ref_in(call: object, info: CallableInfo, context: str | None) -> str | None:
    """A ``module.attribute`` path to ``call``: ``info.ref``, else a global of the
    module ``context`` (the one whose code wrote ``Depends(call)``) or of a
    module it imported; None when neither holds it.  Cached per (call, context)."""
    if info.ref is not None or context is None:
        return info.ref
    key = (id(call), context)
    hit = _context_refs.get(key)
    if hit is not None and hit[0] is call:
        return hit[1]
    try:
        ref = _held_by(sys.modules.get(context), call, look_into_modules=True)
    except Exception:  # a module whose globals misbehave: no name, never an error
        ref = None
    if len(_context_refs) >= _CACHE_LIMIT:
        _context_refs.clear()
    _context_refs[key] = (call, ref)
    return ref


def clear_cache() -> None:
    """Forget all cached metadata (used by uninstrument)."""
    _cache.clear()
    _context_refs.clear()


def wrapped_of(obj: Any) -> Any:
    """What ``obj`` wraps (``functools.wraps`` / ``update_wrapper`` set ``__wrapped__``)."""
    if inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isclass(obj):
        return getattr(obj, "__wrapped__", None)
    # An instance (functools.lru_cache, a decorator class) counts only when the
    # attribute was really set on it: proxies and mocks answer any getattr.
    try:
        return vars(obj).get("__wrapped__")
    except TypeError:
        return None


def wrapped_chain(obj: Any) -> tuple[Any, ...]:
    """The ``__wrapped__`` chain of ``obj``, outermost first, without ``obj``."""
    chain: list[Any] = []
    seen = {id(obj)}
    current = wrapped_of(obj)
    while current is not None and id(current) not in seen and len(chain) < _MAX_WRAPPED:
        seen.add(id(current))
        chain.append(current)
        current = wrapped_of(current)
    return tuple(chain)


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
    chain = wrapped_chain(target)
    module, name = _claimed_name(target, instance=callable_type == "instance")
    qualname = f"{module}:{name}"
    code_fn, site = _site([target, *chain])
    exact = _is_at(module, name, call)
    ref = f"{module}.{name}" if exact else _own_module_ref(call, target)
    wraps = wraps_site = None
    inner = chain[-1] if chain else (target if target is not call else None)
    if inner is not None:
        inner_module, inner_name = _claimed_name(inner, instance=False)
        wraps = f"{inner_module}:{inner_name}"
        wraps_site = _site([inner, *wrapped_chain(inner)])[1]
    home = _home(code_fn, target)
    return CallableInfo(
        qualname=qualname,
        site=site,
        kind=_kind(target),
        callable_type=callable_type,
        exact=exact,
        ref=ref,
        wraps=wraps,
        wraps_site=wraps_site,
        home=home,
    )


def _claimed_name(target: Any, *, instance: bool) -> tuple[str, str]:
    """``(module, qualname)`` as the object names itself (``Class()`` for an instance)."""
    if instance:
        try:
            own = vars(target)
        except TypeError:
            own = {}
        # A wrapper object (functools.lru_cache, a decorator class using
        # update_wrapper) carries the wrapped function's names: it is called like one.
        if "__wrapped__" in own and isinstance(own.get("__qualname__"), str):
            return str(own.get("__module__") or "?"), own["__qualname__"]
    owner = type(target) if instance else target
    module = getattr(owner, "__module__", None) or "?"
    name = getattr(owner, "__qualname__", None) or getattr(owner, "__name__", None)
    if not isinstance(name, str):
        return str(module), f"{type(target).__qualname__}()"
    return str(module), f"{name}()" if instance else name


def _is_at(module: str, qualname: str, obj: object) -> bool:
    """Whether ``module.qualname`` (looked up in the loaded module, no imports, no
    properties run) is ``obj`` itself."""
    if "<" in qualname or qualname.endswith("()"):
        return False
    current: Any = sys.modules.get(module)
    for part in qualname.split("."):
        if current is None:
            return False
        try:
            current = vars(current).get(part)
        except TypeError:
            return False
    if current is obj:
        return True
    # A staticmethod/classmethod sits in its class's dict as a descriptor.
    func = getattr(current, "__func__", None) if current is not None else None
    return func is not None and func is getattr(obj, "__func__", obj)


def _own_module_ref(call: object, target: Any) -> str | None:
    """A global of the module whose code defines ``call`` that holds it."""
    fn = target.__func__ if inspect.ismethod(target) else target
    namespace = getattr(fn, "__globals__", None) if inspect.isfunction(fn) else None
    if not isinstance(namespace, dict):
        return None
    module = sys.modules.get(str(namespace.get("__name__")))
    try:
        return _held_by(module, call, look_into_modules=False)
    except Exception:
        return None


def _held_by(module: ModuleType | None, obj: object, *, look_into_modules: bool) -> str | None:
    """``module.name`` for a global of ``module`` that is ``obj``; with
    ``look_into_modules``, also ``other.name`` for a module it imported."""
    if module is None:
        return None
    namespace = vars(module)
    imported: list[ModuleType] = []
    for name, value in list(namespace.items()):
        if value is obj:
            return f"{module.__name__}.{name}"
        if look_into_modules and isinstance(value, ModuleType):
            imported.append(value)
    for other in imported[:_MAX_MODULE_GLOBALS]:
        for name, value in list(vars(other).items()):
            if value is obj:
                return f"{other.__name__}.{name}"
    return None


def _code_of(obj: Any) -> tuple[Any, Any]:
    """``(function, code)`` of a function, method, or callable instance's ``__call__``."""
    fn = obj.__func__ if inspect.ismethod(obj) else obj
    if inspect.isclass(fn):
        return None, None
    code = getattr(fn, "__code__", None)
    if not isinstance(code, CodeType) and callable(fn):
        fn = getattr(type(fn), "__call__", None)  # noqa: B004 - the method, for its code
        code = getattr(fn, "__code__", None)
    # A mock answers any attribute: only a real code object is a definition.
    return (fn, code) if isinstance(code, CodeType) else (None, None)


def _site(objects: list[Any]) -> tuple[Any, str | None]:
    """``(function, "file:line")``: the first of ``objects`` (an object and what it
    wraps) whose code is in a user file, else the first with code at all, else a
    class's source line."""
    first: tuple[Any, Any] | None = None
    for obj in objects:
        fn, code = _code_of(_unwrap_partial(obj))
        if code is None:
            continue
        if not is_library_file(code.co_filename):
            return fn, f"{shorten_path(code.co_filename)}:{code.co_firstlineno}"
        if first is None:
            first = (fn, code)
    if first is not None:
        fn, code = first
        return fn, f"{shorten_path(code.co_filename)}:{code.co_firstlineno}"
    for obj in objects:
        target = _unwrap_partial(obj)
        if inspect.isclass(target):
            try:
                file = inspect.getsourcefile(target)
                _, line = inspect.getsourcelines(target)
            except (OSError, TypeError):
                return None, None
            return None, f"{shorten_path(file)}:{line}" if file else None
    return None, None


def _home(code_fn: Any, target: Any) -> str | None:
    namespace = getattr(code_fn, "__globals__", None)
    if isinstance(namespace, dict) and isinstance(namespace.get("__name__"), str):
        return str(namespace["__name__"])
    owner = target if inspect.isclass(target) else type(target)
    module = getattr(owner, "__module__", None)
    return module if isinstance(module, str) else None


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


@functools.lru_cache(maxsize=1024)
def shorten_path(path: str) -> str:
    """Show ``path`` relative to the working directory when it lies below it.

    String work on functions bound at import: ``os.path.relpath`` would call
    ``os.getcwd`` and ``os.path.abspath`` through attributes tests patch.
    """
    cwd = _getcwd()
    full = absolute_path(path)
    prefix = cwd if cwd.endswith(_sep) else cwd + _sep
    return full[len(prefix) :] if full.startswith(prefix) else path


def absolute_path(path: str | os.PathLike[str]) -> str:
    """``os.path.abspath(path)`` from functions bound at import: ``abspath`` calls
    ``os.getcwd`` through the attribute tests patch (and ``monkeypatch.chdir``
    still counts: the working directory is read, not remembered)."""
    text = _fspath(path)
    return _normpath(text if _isabs(text) else _join(_getcwd(), text))


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {os.path.dirname(os.path.abspath(__file__))}
    dirs.update(os.path.abspath(paths[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib"))
    return tuple(d + os.sep for d in sorted(dirs))


# Computed at import, not at the first finding: that may come inside a test that
# patched os.path.
_LIBRARY_DIRS = _library_dirs()


def library_dirs() -> tuple[str, ...]:
    """The standard library, site-packages and depstrace's own directory (each
    ending in a separator): no user code lives there."""
    return _LIBRARY_DIRS


@functools.lru_cache(maxsize=1024)
def is_library_file(path: str) -> bool:
    """Whether ``path`` is library code (see :func:`library_dirs`) or has no file
    (``<frozen ...>``, ``<string>``)."""
    return path.startswith("<") or absolute_path(path).startswith(_LIBRARY_DIRS)
