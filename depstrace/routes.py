"""The walk of a FastAPI app's routes: every route of the app and of the FastAPI apps
mounted in it, as FastAPI serves them (include prefixes and router-level
dependencies applied), with each route's dependency tree and the overrides that
would serve it.

``depstrace doctor`` reports on the walk; the end-of-run ``OVERRIDE_UNUSED``
check asks :func:`routes_using` before it calls an override unused.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from depstrace._callables import describe as _describe
from depstrace._callables import ref_in
from depstrace._lookalike import label, origin
from depstrace._names import name_parts
from depstrace.fastapi import app_id, app_origin, app_title

_MAX_DEPTH = 32  # dependency trees deeper than this are cut (they never are in practice)
MISSING: Any = object()  # no override key finds the callable
_FASTAPI_DOCS = "fastapi.applications"  # the module of /openapi.json, /docs, /redoc: left out


def routes_using(app: Any, keys: list[Any]) -> list[list[str]] | None:
    """For each of ``keys``, the routes of ``app`` and of the apps mounted in it whose
    dependency tree uses that exact object (``["GET /items (db)", ...]``), walked as
    the doctor walks them; ``None`` when some route could not be examined.

    The end-of-run ``OVERRIDE_UNUSED`` check asks this before it claims that no route
    depends on a key no request of a partial run consulted.
    """
    walk = RouteWalk()
    walk.scan_app(app, mount_path=None, prefix="", ancestors=[])
    if any(scan.opaque for scan in walk.scans):
        return None
    uses = [use for scan in walk.scans for use in scan.uses]
    return [[use.where for use in uses if same_key(key, use.call)] for key in keys]


@dataclass(eq=False)
class Use:
    """One dependency node of a route: where it is used and whether it was overridden."""

    call: Any
    where: str  # "GET /items (db)"
    overridden: bool
    route: dict[str, Any] = field(default_factory=dict)  # the Route document it belongs to
    node: dict[str, Any] = field(default_factory=dict)  # its Dependency document

    @property
    def shown(self) -> str:
        """The callable named so the name finds it (a wrapper by where it is held)."""
        node = self.node
        name, facts = name_parts(node["callable"], node["site"], node["alias"])
        return f"{name} ({', '.join(facts)})" if facts else name


@dataclass(eq=False)
class AppScan:
    """One FastAPI app as the doctor walked it."""

    app: Any
    ident: str
    title: str
    mount_path: str | None
    ancestors: list[AppScan]
    uses: list[Use] = field(default_factory=list)
    doc: dict[str, Any] = field(default_factory=dict)
    opaque: list[str] = field(default_factory=list)  # route types the walk could not enter


class RouteWalk:
    """Walks apps into :attr:`scans`; :meth:`note_module` hears of every module whose
    code declared a route or a dependency (the doctor looks into them for engines)."""

    def __init__(self) -> None:
        self.scans: list[AppScan] = []

    def note_module(self, module: Any) -> None:
        """A module whose code wrote a route or a ``Depends``: nothing to do here."""

    def scan_app(
        self, app: Any, *, mount_path: str | None, prefix: str, ancestors: list[AppScan]
    ) -> AppScan:
        ident = app_id(app)
        scan = AppScan(app, ident, app_title(app), mount_path, ancestors)
        self.scans.append(scan)
        site, phase = app_origin(ident) or (None, None)
        scan.doc = {
            "id": ident,
            "title": scan.title,
            "created_at": site,
            "created_phase": phase,
            "mount_path": mount_path,
            "routes": [],
            "mounts": [],
            "overrides": [],
            "unexamined_routes": [],
        }
        self._scan_routes(scan, getattr(app, "routes", []), prefix)
        scan.doc["unexamined_routes"] = sorted(set(scan.opaque))
        return scan

    def _scan_routes(self, scan: AppScan, routes: Iterable[Any], prefix: str) -> None:
        from starlette.routing import Mount

        for route in routes:
            if isinstance(route, Mount):
                self._scan_mount(scan, route, prefix)
            elif is_included_router(route):
                self._scan_included(scan, route, prefix)
            elif not isinstance(getattr(route, "path", None), str):
                # A route type this FastAPI has and depstrace does not know: say so, and
                # call no override unused on the strength of an incomplete walk.
                kind = type(route)
                scan.opaque.append(f"{kind.__module__}:{kind.__qualname__}")
            elif getattr(getattr(route, "endpoint", None), "__module__", None) != _FASTAPI_DOCS:
                scan.doc["routes"].append(self._route(scan, route, prefix))

    def _scan_included(self, scan: AppScan, included: Any, prefix: str) -> None:
        """An ``include_router`` entry of FastAPI >= 0.141 (``_IncludedRouter``): its
        routes, nested includes flattened, as FastAPI serves them: the full path
        with every include prefix and the dependant with router-level dependencies."""
        from fastapi.routing import APIRoute
        from starlette.routing import Mount

        try:  # private FastAPI API: if it changes, say what was not examined
            contexts = list(included.effective_route_contexts())
        except Exception:
            kind = type(included)
            scan.opaque.append(f"{kind.__module__}:{kind.__qualname__}")
            return
        for context in contexts:
            original = getattr(context, "original_route", None)
            copy = getattr(context, "starlette_route", None)
            if isinstance(original, APIRoute):
                scan.doc["routes"].append(self._route(scan, context, prefix, kind="http"))
            elif isinstance(copy, Mount):
                self._scan_mount(scan, copy, prefix)
            elif copy is not None:
                self._scan_routes(scan, [copy], prefix)
            else:
                kind = type(original)
                scan.opaque.append(f"{kind.__module__}:{kind.__qualname__}")

    def _scan_mount(self, scan: AppScan, mount: Any, prefix: str) -> None:
        from fastapi import FastAPI

        path = prefix + mount.path
        sub = getattr(mount, "app", None)
        seen = next((known for known in self.scans if known.app is sub), None)
        if isinstance(sub, FastAPI) and seen is None:
            child = self.scan_app(
                sub, mount_path=path, prefix=path, ancestors=[scan, *scan.ancestors]
            )
            scan.doc["mounts"].append({"path": path, "app": child.doc})
        else:  # listed already, or a Starlette app, static files, a Router: no FastAPI routes
            kind = type(sub)
            scan.doc["mounts"].append(
                {
                    "path": path,
                    "app": None,
                    "app_type": f"{kind.__module__}:{kind.__qualname__}",
                    "same_as": seen.ident if seen is not None else None,
                }
            )

    def _route(
        self, scan: AppScan, route: Any, prefix: str, *, kind: str | None = None
    ) -> dict[str, Any]:
        """One route (or FastAPI's effective view of an included one, ``kind`` given)."""
        path = prefix + str(getattr(route, "path", "?"))
        methods = getattr(route, "methods", None)
        if kind is None:
            kind = "http" if methods is not None else "websocket"
            if kind == "websocket" and "WebSocket" not in type(route).__name__:
                kind = "other"
        verb = ",".join(sorted(methods)) if methods else "WEBSOCKET"
        endpoint = getattr(route, "endpoint", None)
        self.note_module(sys.modules.get(getattr(endpoint, "__module__", None) or ""))
        doc: dict[str, Any] = {
            "kind": kind,
            "methods": sorted(methods) if methods else [],
            "path": path,
            "name": getattr(route, "name", None),
            "endpoint": label(endpoint) if endpoint is not None else None,
            "endpoint_site": origin(endpoint) if endpoint is not None else None,
            "dependencies": [],
            "lookalikes": [],
        }
        dependant = getattr(route, "dependant", None)
        if dependant is not None:
            overrides = overrides_of(scan.app)
            doc["dependencies"] = self._tree(
                scan,
                dependant,
                overrides,
                route=doc,
                path=getattr(route, "path_format", path),
                where=f"{verb} {path}",
                depth=0,
            )
        return doc

    def _tree(
        self,
        scan: AppScan,
        dependant: Any,
        overrides: dict[Any, Any],
        *,
        route: dict[str, Any],
        path: str,
        where: str,
        depth: int,
    ) -> list[dict[str, Any]]:
        nodes = []
        parent = getattr(dependant, "call", None)
        context = _describe(parent).home if parent is not None else None
        for sub in getattr(dependant, "dependencies", None) or []:
            call = sub.call
            name = sub.name or label(call).rpartition(":")[2]
            key = key_for(overrides, call)
            self.note_module(sys.modules.get(getattr(call, "__module__", None) or ""))
            info = _describe(call)
            node: dict[str, Any] = {
                "name": name,
                "callable": label(call),
                "site": origin(call),
                "alias": alias_doc(call, info, context),
                "override": None,
                "dependencies": [],
            }
            scan.uses.append(Use(call, f"{where} ({name})", key is not MISSING, route, node))
            solved = sub
            if key is not MISSING:
                value = overrides[key]
                node["override"] = {"callable": label(value), "site": origin(value)}
                solved = dependant_for(value, path)  # FastAPI solves the override's own Depends
            if depth < _MAX_DEPTH:
                node["dependencies"] = self._tree(
                    scan, solved, overrides, route=route, path=path, where=where, depth=depth + 1
                )
            nodes.append(node)
        return nodes


def is_included_router(route: Any) -> bool:
    """An ``include_router`` entry kept in the route list (FastAPI >= 0.141)."""
    return hasattr(route, "original_router") and hasattr(route, "effective_route_contexts")


def alias_doc(call: Any, info: Any, context: str | None) -> dict[str, Any] | None:
    """As ``*_alias`` in the trace: null when the callable's own name finds it."""
    if info.exact:
        return None
    ref = ref_in(call, info, context)
    if ref is None and info.wraps is None:
        return None
    return {"ref": ref, "wraps": info.wraps, "wraps_site": info.wraps_site}


def overrides_of(app: Any) -> dict[Any, Any]:
    overrides = getattr(app, "dependency_overrides", None)
    return overrides if isinstance(overrides, dict) else {}


def key_for(overrides: dict[Any, Any], call: Any) -> Any:
    """The stored key FastAPI's ``overrides.get(call, call)`` would find, or MISSING."""
    if not overrides:
        return MISSING
    try:
        if call not in overrides:
            return MISSING
    except TypeError:  # unhashable: FastAPI would fail the request too
        return MISSING
    for key in overrides:
        if key is call:
            return key
    for key in overrides:
        if same_key(key, call):
            return key
    return MISSING


def same_key(key: Any, call: Any) -> bool:
    """Whether a dict lookup of ``call`` finds ``key`` (hash and ==, as FastAPI's does)."""
    if key is call:
        return True
    try:
        return hash(key) == hash(call) and (key == call) is True
    except Exception:
        return False


def dependant_for(call: Any, path: str) -> Any:
    try:
        from fastapi.dependencies.utils import get_dependant

        return get_dependant(path=path, call=call)
    except Exception:  # an override FastAPI itself could not analyse: nothing below it
        return None
