"""The wrapped FastAPI dependency solver and the registry of FastAPI apps.

``solve_dependencies`` recurses through its module global, and its loop is
sequential: the i-th nested call solves ``dependant.dependencies[i]`` (or the
override FastAPI looked up for it).  A :class:`_Frame` per call mirrors that
loop, so each nested call becomes one :class:`DependencyNode` with its parent,
and the gap until the next sibling starts is the time the callable itself ran.
Values are read where FastAPI leaves them (the ``values`` dict by parameter
name, else the dependency cache) after the frame finishes — never by wrapping
user callables.  Records are keyed on the *original* ``Dependant`` position,
never on ``Dependant`` identity: with overrides set, FastAPI builds fresh
``Dependant`` objects on every request.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from itertools import islice
from time import perf_counter
from typing import TYPE_CHECKING, Any

from depstrace._callables import CallableInfo, describe, ref_in
from depstrace._context import current_frame, current_request
from depstrace._failopen import report_internal_error
from depstrace._order import birth_of
from depstrace._records import Alias, DependencyNode, NodeFacts, RequestRecord
from depstrace._redact import redact_text
from depstrace._sites import caller_site, library_dir
from depstrace.sqlalchemy import engine_of, holds_engine, registry, value_type

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry


# --- app registry -------------------------------------------------------------

_apps: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_titles: dict[str, str] = {}
_origins: dict[str, tuple[str | None, str]] = {}  # app id -> (site, phase) of FastAPI()
_created: weakref.WeakSet[Any] = weakref.WeakSet()  # FastAPI apps created while tracing


def app_id(app: Any) -> str:
    """A short id for a FastAPI (or any ASGI) app object, stable for the run."""
    try:
        return _apps[app]
    except KeyError:
        ident = _apps[app] = f"app{len(_titles) + 1}"
    except TypeError:  # not weak-referenceable: still give it a readable id
        ident = f"app@{id(app):x}"
    _titles[ident] = app_title(app)
    return ident


def app_origin(ident: str) -> tuple[str | None, str] | None:
    """``("file:line", phase)`` where the app ``ident`` was created, when depstrace saw it."""
    return _origins.get(ident)


def known_apps() -> list[Any]:
    """Every live FastAPI app created while depstrace was tracing."""
    return list(_created)


def tracked_apps() -> list[Any]:
    """Every live app depstrace knows: created while tracing, or seen serving."""
    return list(_apps.keys())


def _note_created(app: Any, skip: tuple[str, ...]) -> None:
    ident = app_id(app)
    _origins[ident] = caller_site(skip)
    _created.add(app)


def title_of(ident: str) -> str | None:
    """The title of the app that got ``ident``."""
    return _titles.get(ident)


def app_title(app: Any) -> str:
    """The app's ``title`` (FastAPI) or its class name."""
    title = getattr(app, "title", None)
    return title if isinstance(title, str) else type(app).__qualname__


# --- solver wrapper -------------------------------------------------------------

CacheKey = Callable[[Any, Any], Any]  # (sub_dependant, solver kwargs) -> FastAPI's cache key


def describe_exception(exc: BaseException) -> str:
    """``module.Type: message`` with secrets removed, cut to a readable length.

    HTTP exceptions read ``Type(403): detail`` whatever their ``__str__`` does
    in the installed Starlette.
    """
    kind = type(exc)
    builtin = kind.__module__ == "builtins"
    name = kind.__qualname__ if builtin else f"{kind.__module__}.{kind.__qualname__}"
    status, detail = getattr(exc, "status_code", None), getattr(exc, "detail", None)
    if isinstance(status, int) and detail is not None:
        name, message = f"{name}({status})", str(detail)
    else:
        message = str(exc)
    text = f"{name}: {redact_text(message)}" if message else name
    return text if len(text) <= 300 else text[:297] + "..."


_UNKNOWN = "<not looked up yet>"


class _Frame:
    """One ``solve_dependencies`` call: the node it solves (None for a root solve:
    the endpoint, or a router-level group of dependencies) and its child frames."""

    __slots__ = (
        "children",
        "context",
        "dependant",
        "key",
        "key_of",
        "kwargs",
        "last_cache",
        "node",
        "record",
        "state",
        "sub",
    )

    def __init__(
        self, record: RequestRecord, dependant: Any, kwargs: dict[str, Any], key_of: CacheKey
    ) -> None:
        self.record = record
        self.kwargs = kwargs
        self.key_of = key_of
        self.dependant = dependant
        self.children: list[_Frame] = []
        self.last_cache: Any = None
        self.context: str | None = _UNKNOWN  # the module whose code wrote its Depends
        # As a child of its parent's solve: its node, the original sub-dependant (the
        # declaration's position, whatever override FastAPI solved), FastAPI's cache
        # key when computed, and how far it got: solving -> ready (sub-dependencies
        # solved, FastAPI calls it next) | invalid (parameters failed validation) | raised.
        self.node: DependencyNode | None = None
        self.sub: Any = None
        self.key: Any = None
        self.state = "solving"

    def alias(self, call: Any, info: CallableInfo) -> Alias | None:
        """None when ``call``'s own name finds it (nearly always: one attribute read);
        else a ``module.attribute`` that does, looked up in the module that wrote
        this frame's ``Depends`` when needed, and what it wraps."""
        if info.exact:
            return None
        if info.ref is None and self.context is _UNKNOWN:
            parent = self.dependant.call
            self.context = describe(parent).home if parent is not None else None
        ref = ref_in(call, info, self.context)
        if ref is None and info.wraps is None:
            return None  # a closure, an instance held nowhere: nothing better to say
        return (ref, info.wraps, info.wraps_site)

    def start_child(self, child: _Frame, provider: Any) -> bool:
        """Make ``child`` (the nested solve starting now) the node of the next of this
        frame's sub-dependencies; False when it is none of them."""
        subs = self.dependant.dependencies
        index = len(self.children)
        if index >= len(subs):
            return False
        sub = subs[index]
        original = sub.call
        resolved = child.dependant.call
        overrides = getattr(provider, "dependency_overrides", None) if provider else None
        expected = overrides.get(original, original) if overrides else original
        if resolved is not expected:
            return False  # somebody else's nested solve (a plugin calling the solver)
        self._close_last()
        kwargs = child.kwargs
        cache = kwargs.get("dependency_cache")
        record = self.record
        # FastAPI's cache keys start with the callable: only compute the full key
        # (scopes included) when this callable is in the cache at all, or when
        # the value can only be found there (no parameter name).
        key = None
        if sub.name is None or (sub.use_cache and cache and _in_cache(record, cache, original)):
            key = self.key_of(sub, kwargs)
        if provider is None:
            provider_id = None
        elif provider is record.provider:  # the same app all request long: one id lookup
            provider_id = record.provider_id
        else:
            provider_id = app_id(provider)
        node = DependencyNode(
            self.facts(sub, original, resolved),
            len(record.dependencies),
            self.node.id if self.node is not None else None,
            provider_id,
            bool(key is not None and sub.use_cache and cache and key in cache),
            perf_counter(),
        )
        record.dependencies.append(node)
        record.calls.append(original)
        child.node, child.sub, child.key = node, sub, key
        self.children.append(child)
        self.last_cache = cache
        return True

    def facts(self, sub: Any, original: Any, resolved: Any) -> NodeFacts:
        """The cached :class:`NodeFacts` of ``sub`` (a declaration in this frame's
        callable) solved by ``resolved``; built on first sight."""
        parent_call = self.dependant.call
        scope = getattr(sub, "scope", None)
        key = (id(original), id(resolved), id(parent_call), sub.name, sub.use_cache, scope)
        hit = _facts.get(key)
        if hit is not None and hit[0] is original and hit[1] is resolved and hit[2] is parent_call:
            return hit[3]
        original_info = describe(original)
        resolved_info = original_info if resolved is original else describe(resolved)
        original_alias = self.alias(original, original_info)
        facts = NodeFacts(
            name=sub.name,
            original=original_info.qualname,
            original_site=original_info.site,
            resolved=resolved_info.qualname,
            resolved_site=resolved_info.site,
            overridden=resolved is not original,
            kind=resolved_info.kind,
            callable_type=resolved_info.callable_type,
            scope=scope,
            use_cache=sub.use_cache,
            original_alias=original_alias,
            resolved_alias=(
                self.alias(resolved, resolved_info) if resolved is not original else original_alias
            ),
        )
        if len(_facts) >= _FACTS_LIMIT:
            _facts.clear()
        # The strong references keep the ids in the key from being reused while cached.
        _facts[key] = (original, resolved, parent_call, facts)
        return facts

    def _close_last(self) -> None:
        if self.children:
            node = self.children[-1].node
            if node is not None and node.duration_ms is None:
                node.duration_ms = (perf_counter() - node.started) * 1000.0

    def finish(self, values: dict[str, Any], cache: Any) -> None:
        self._close_last()
        for child in self.children:
            node = child.node
            if node is None:
                continue
            if child.state == "invalid":
                node.error = "not called: its parameters failed validation"
                continue
            name = child.sub.name
            if name is not None and name in values:
                _observe_value(node, values[name])
            elif cache and child.key is not None and child.key in cache:
                _observe_value(node, cache[child.key])

    def fail(self, exc: BaseException) -> None:
        self._close_last()
        if self.children:
            last = self.children[-1]
            # Its sub-dependencies were solved: its own call raised.
            if last.state == "ready" and last.node is not None:
                last.node.error = describe_exception(exc)
        # The values dict is lost with the exception: find the solved children's
        # values in the cache, so statements they ran keep their ``via``.
        cache = self.last_cache
        if not cache:
            return
        for child in self.children[:-1]:
            if child.node is None:
                continue
            key = child.key if child.key is not None else self.key_of(child.sub, self.kwargs)
            if key in cache:
                _observe_value(child.node, cache[key])


# (original, resolved, parent callable ids, name, use_cache, scope) -> (the three
# objects, their facts): one entry per Depends declaration and override in use.
_facts: dict[tuple[Any, ...], tuple[Any, Any, Any, NodeFacts]] = {}
_FACTS_LIMIT = 4096


def clear_facts() -> None:
    """Forget the cached node facts (used by uninstrument)."""
    _facts.clear()


def _in_cache(record: RequestRecord, cache: dict[Any, Any], call: Any) -> bool:
    """Whether a key of FastAPI's dependency ``cache`` starts with ``call``.

    The ids of the callables heading its keys are kept on the record and only
    the keys added since the last look are read: FastAPI never removes one, and
    scanning the whole cache for every ``Depends`` made a request's cost grow
    with the square of its dependency count.
    """
    if record.cache_seen is not cache:
        record.cache_seen, record.cache_calls, record.cache_read = cache, set(), 0
    size = len(cache)
    if size > record.cache_read:
        calls = record.cache_calls
        for key in islice(cache, record.cache_read, None):
            calls.add(id(key[0]))
        record.cache_read = size
    return id(call) in record.cache_calls


def _observe_value(node: DependencyNode, value: Any) -> None:
    node.value_type = value_type(value)
    node.born = birth_of(value)
    engine = engine_of(value)
    if engine is not None:
        node.engine_id = registry.lookup(engine).id
        node.engine_held = holds_engine(value)


def _unpack(result: Any) -> tuple[dict[str, Any], Any, Any]:
    """``(values, errors, cache)`` from a 5-tuple (<0.112.3) or a ``SolvedDependency``."""
    if isinstance(result, tuple):
        return result[0], result[1], result[4]
    return result.values, result.errors, result.dependency_cache


def make_traced_solver(original: Callable[..., Any], key_of: CacheKey) -> Callable[..., Any]:
    """Wrap ``solve_dependencies``; ``**kwargs`` go through untouched."""

    async def solve_dependencies(*args: Any, **kwargs: Any) -> Any:
        record = current_request.get()
        if record is None:
            return await original(*args, **kwargs)
        try:
            frame, token = _enter(record, kwargs, key_of)
        except Exception:
            report_internal_error("solver wrapper (enter)")
            return await original(*args, **kwargs)
        try:
            result = await original(*args, **kwargs)
        except BaseException as exc:
            current_frame.reset(token)
            try:
                frame.fail(exc)
                frame.state = "raised"
            except Exception:
                report_internal_error("solver wrapper (error)")
            raise
        current_frame.reset(token)
        try:
            values, errors, cache = _unpack(result)
            frame.finish(values, cache)
            frame.state = "invalid" if errors else "ready"
        except Exception:
            report_internal_error("solver wrapper (exit)")
        return result

    solve_dependencies.__wrapped__ = original  # type: ignore[attr-defined]
    solve_dependencies.__doc__ = original.__doc__
    return solve_dependencies


def _enter(record: RequestRecord, kwargs: dict[str, Any], key_of: CacheKey) -> tuple[_Frame, Any]:
    dependant = kwargs["dependant"]
    provider = kwargs.get("dependency_overrides_provider")
    frame = _Frame(record, dependant, kwargs, key_of)
    parent = current_frame.get()
    if parent is None or not parent.start_child(frame, provider):
        # a root solve: the endpoint (or a router-level group of dependencies)
        _note_root(record, dependant, provider, kwargs.get("request"))
    return frame, current_frame.set(frame)


def _note_root(record: RequestRecord, dependant: Any, provider: Any, request: Any) -> None:
    if record.on_solving is not None and not record.dependencies and record.endpoint is None:
        record.on_solving(record)  # the first solve of the request: tell the observers
    if provider is not None and record.provider_id is None:
        record.provider = provider
        record.provider_id = app_id(provider)
        record.provider_title = app_title(provider)
    if dependant.call is not None:
        record.endpoint = describe(dependant.call).qualname
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        path = route_template(scope)
        if path is not None:
            prefix = scope.get("root_path", "")[len(record.root_path) :]
            record.route = prefix + path


def route_template(scope: dict[str, Any]) -> str | None:
    """The template of the route serving ``scope`` within its app, include
    prefixes included (mount prefixes are in ``root_path``).

    Before FastAPI 0.141 ``include_router`` copies routes with the prefix
    applied, so ``scope["route"].path`` is complete.  From 0.141 the included
    router stays in the route list (``_IncludedRouter``) and ``scope["route"]``
    is the router's own ``APIRoute``, without the include prefixes; FastAPI
    keeps the effective route, whose ``path`` has them, in ``scope["fastapi"]``
    (seen on 0.141.1 and 0.165.0).  Private there, so every step is checked.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    private = scope.get("fastapi")
    if isinstance(private, dict):
        effective = private.get("effective_route_context")
        full = getattr(effective, "path", None)
        # A websocket route is copied with its full path: then scope["route"] is
        # that copy, not the effective route's original, and already complete.
        if getattr(effective, "original_route", None) is route and isinstance(full, str) and full:
            return full
    return path


def _cache_key_function() -> CacheKey:
    from fastapi.dependencies import utils

    get_cache_key = getattr(utils, "_get_cache_key", None)
    if get_cache_key is not None:  # FastAPI >= 0.140
        # Reuse the per-request memo FastAPI passes down, as FastAPI itself does:
        # without it every key walks the whole sub-tree again.
        return lambda sub, kwargs: get_cache_key(
            dependant=sub, uses_scopes_cache=kwargs.get("_uses_scopes_cache")
        )
    return lambda sub, kwargs: sub.cache_key


def install(patches: PatchRegistry) -> bool:
    """Wrap the solver everywhere it is bound and note every FastAPI app created;
    False when FastAPI is not installed.  (Requests reach the record through
    :func:`depstrace.middleware.install`.)"""
    try:
        import fastapi
        import fastapi.routing
        from fastapi.dependencies import utils
    except ImportError:
        return False

    traced = make_traced_solver(utils.solve_dependencies, _cache_key_function())
    patches.rebind_everywhere(utils.solve_dependencies, traced)

    import starlette

    original_init = fastapi.FastAPI.__init__
    skip = (library_dir(fastapi), library_dir(starlette))

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        try:
            _note_created(self, skip)
        except Exception:
            report_internal_error("FastAPI() wrapper")

    patches.patch(fastapi.FastAPI, "__init__", __init__)
    return True
