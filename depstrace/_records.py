"""The in-memory shape of what one request did, and its JSON Lines form.

A :class:`RequestRecord` is filled while the request runs (by the middleware,
the solver wrapper and the SQLAlchemy listener) and turned into a plain dict
once, when it closes.  docs/format.md documents the dict; ``SCHEMA`` versions it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter, time
from typing import Any

SCHEMA = 1
Alias = tuple[str | None, str | None, str | None]  # (ref, wraps, wraps_site)
WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE", "UPSERT"})


@dataclass(eq=False)
class EngineInfo:
    """One SQLAlchemy engine as depstrace knows it (never holds a password)."""

    id: str
    url: str  # redacted
    backend: str
    driver: str
    database: str | None
    created_at: str | None  # "file:line" of the create_engine call, when seen
    created_phase: str | None  # import, collection, setup, call, teardown, runtime
    created_test: str | None
    host: str | None = None
    port: int | None = None
    env_vars: tuple[str, ...] = ()  # environment variables whose value is this URL
    # name -> {"set": before_start | changed | during_run | None, "lines": [...]}
    env_origins: dict[str, dict[str, Any]] = field(default_factory=dict)
    is_test: bool | None = None  # set by the session when the engine is first seen
    # {name, scope, site} of the fixture whose setup or teardown created it, else None
    created_fixture: dict[str, Any] | None = None
    # depstrace._order.Birth of the settings object whose field is this URL, if any
    from_settings: Any = None
    # Made with creator= / async_creator=: the URL need not be the database.  True until
    # the SQLite file is read from the first connection (depstrace.sqlalchemy), then False.
    creator: bool = False
    creator_checked: bool = False  # its SQLite file was looked for (once)

    def to_dict(self) -> dict[str, Any]:
        """The ``engine`` JSON Lines record."""
        return {
            "type": "engine",
            "schema": SCHEMA,
            "id": self.id,
            "url": self.url,
            "backend": self.backend,
            "driver": self.driver,
            "database": self.database,
            "host": self.host,
            "port": self.port,
            "env_vars": list(self.env_vars),
            "env_origins": self.env_origins,
            "created_at": self.created_at,
            "created_phase": self.created_phase,
            "created_test": self.created_test,
            "created_fixture": self.created_fixture,
        }


class NodeFacts:
    """What every solve of one ``Depends`` declaration shares: the callables' names and
    sites, the override, the parameter.  Built once per (declaration, resolved
    callable) and cached by the solver wrapper, with the static part of the node's
    JSON form ready to copy, so a solved node costs a few attribute writes."""

    __slots__ = (
        "callable_type",
        "kind",
        "name",
        "original",
        "original_alias",
        "original_site",
        "overridden",
        "resolved",
        "resolved_alias",
        "resolved_site",
        "scope",
        "template",
        "use_cache",
    )

    def __init__(
        self,
        *,
        name: str | None,
        original: str,
        original_site: str | None,
        resolved: str,
        resolved_site: str | None,
        overridden: bool,
        kind: str,
        callable_type: str,
        scope: str | None,
        use_cache: bool,
        original_alias: Alias | None = None,
        resolved_alias: Alias | None = None,
    ) -> None:
        self.name = name  # parameter name; None for path-operation ``dependencies=[...]``
        self.original = original
        self.original_site = original_site
        self.resolved = resolved
        self.resolved_site = resolved_site
        self.overridden = overridden
        self.kind = kind
        self.callable_type = callable_type
        self.scope = scope
        self.use_cache = use_cache
        # None when ``original`` (module:qualname) finds the very object, the common
        # case; else (module.attribute that does or None, what it wraps, that one's
        # site): docs/format.md, "Names that find the object".
        self.original_alias = original_alias
        self.resolved_alias = resolved_alias
        # The entry of ``request.dependencies`` with the per-solve keys still None, in
        # the documented key order (a copy keeps it).
        self.template: dict[str, Any] = {
            "id": None,
            "name": name or resolved.rpartition(":")[2],
            "original": original,
            "original_site": original_site,
            "resolved": resolved,
            "resolved_site": resolved_site,
            "overridden": overridden,
            "cached": None,
            "use_cache": use_cache,
            "kind": kind,
            "callable_type": callable_type,
            "parent": None,
            "provider": None,
            "scope": scope,
            "duration_ms": None,
            "error": None,
            "value": None,
            "engine_id": None,
            "original_alias": None,
            "resolved_alias": None,
        }


class DependencyNode:
    """One ``Depends`` (or ``Security``) node solved during a request: its shared
    :class:`NodeFacts` and what this solve found."""

    __slots__ = (
        "born",
        "cached",
        "duration_ms",
        "engine_held",
        "engine_id",
        "error",
        "facts",
        "id",
        "override_leaked_from",
        "override_site",
        "parent",
        "provider",
        "started",
        "value_type",
    )

    def __init__(  # noqa: PLR0917 - the solver's hot path: positional on purpose
        self,
        facts: NodeFacts,
        id: int,
        parent: int | None,
        provider: str | None,  # app id of the overrides provider FastAPI consulted
        cached: bool,
        started: float,
    ) -> None:
        self.facts = facts
        self.id = id
        self.parent = parent
        self.provider = provider
        self.cached = cached
        self.started = started
        self.duration_ms: float | None = None
        self.error: str | None = None
        self.value_type: str | None = None
        self.engine_id: str | None = None
        self.engine_held = False  # the value only holds the engine's session in an attribute
        self.override_site: str | None = None  # where the override that served it was set
        self.override_leaked_from: str | None = None  # the earlier test that left it set
        self.born: Any = None  # depstrace._order.Birth of the value (a settings object)

    # The shared facts, read as the node's own (after the request: never hot).
    name = property(lambda self: self.facts.name)
    original = property(lambda self: self.facts.original)
    original_site = property(lambda self: self.facts.original_site)
    resolved = property(lambda self: self.facts.resolved)
    resolved_site = property(lambda self: self.facts.resolved_site)
    overridden = property(lambda self: self.facts.overridden)
    kind = property(lambda self: self.facts.kind)
    callable_type = property(lambda self: self.facts.callable_type)
    scope = property(lambda self: self.facts.scope)
    use_cache = property(lambda self: self.facts.use_cache)
    original_alias = property(lambda self: self.facts.original_alias)
    resolved_alias = property(lambda self: self.facts.resolved_alias)

    @property
    def label(self) -> str:
        """The parameter name, or the callable's short name when there is none."""
        return self.facts.template["name"]  # type: ignore[no-any-return]

    def to_dict(self) -> dict[str, Any]:
        """The entry of ``request.dependencies``."""
        facts = self.facts
        data = facts.template.copy()
        data["id"] = self.id
        data["cached"] = self.cached
        data["parent"] = self.parent
        data["provider"] = self.provider
        if self.duration_ms is not None:
            data["duration_ms"] = round(self.duration_ms, 3)
        data["error"] = self.error
        data["value"] = self.value_type
        data["engine_id"] = self.engine_id
        if facts.original_alias is not None:  # a fresh dict each: records are edited later
            data["original_alias"] = alias_dict(facts.original_alias)
        if facts.resolved_alias is not None:
            data["resolved_alias"] = alias_dict(facts.resolved_alias)
        if facts.overridden:  # only overridden nodes: a key more on every node costs memory
            data["override_site"] = self.override_site
        return data


def alias_dict(alias: Alias | None) -> dict[str, str | None] | None:
    """The ``*_alias`` JSON form of an alias tuple."""
    if alias is None:
        return None
    return {"ref": alias[0], "wraps": alias[1], "wraps_site": alias[2]}


@dataclass(eq=False)
class DatabaseUse:
    """Statements one request ran on one engine."""

    engine: EngineInfo
    statements: int = 0
    operations: dict[str, int] = field(default_factory=dict)
    pending_writes: int = 0  # writes since the last commit / rollback
    discarded_writes: int = 0  # writes a rollback threw away
    commits: int = 0  # commits and savepoint releases
    origin: str | None = None  # where a non-test engine was reached from (findings only)
    refused: dict[str, int] = field(default_factory=dict)  # by the guard: never ran
    # Pool checkouts (raw_connection(), engine.connect(), a Session): a request that
    # checked a connection out but ran no statement SQLAlchemy saw still used the database.
    connections: int = 0
    connection_origin: str | None = None  # where the first checkout was reached from
    controls: int = 0  # transaction control seen (BEGIN, COMMIT...): never a statement

    def unobserved(self) -> dict[str, int]:
        """``{"unobserved_connections": n}`` when connections were checked out and no
        statement was seen (a raw DBAPI cursor), else ``{}``: an ordinary use's record is
        what it always was."""
        if self.statements or self.controls or not self.connections:
            return {}
        return {"unobserved_connections": self.connections}

    def recorded(self) -> bool:
        """Whether the use belongs in the records: a statement, a refusal, or a checkout
        with nothing seen (a checkout that ran only transaction control is none)."""
        return bool(self.statements or self.refused or self.unobserved())

    def refuse(self, operation: str) -> None:
        """The guard refused the statement just counted: it stays a statement (it was
        attempted) but leaves ``operations``, so no account calls it a write or a read."""
        left = self.operations.get(operation, 0) - 1
        if left > 0:
            self.operations[operation] = left
        else:
            self.operations.pop(operation, None)
        self.refused[operation] = self.refused.get(operation, 0) + 1
        if operation in WRITES and self.pending_writes > 0:
            self.pending_writes -= 1


@dataclass(eq=False)
class RequestRecord:
    """Everything depstrace learns about one HTTP request or websocket session."""

    id: str
    type: str  # "http" or "websocket"
    method: str
    path: str
    test: str | None
    phase: str
    app_id: str
    app_title: str
    trace_id: str | None
    fixture: dict[str, Any] | None = None  # {name, scope, site} of the fixture running it
    started_wall: float = field(default_factory=time)
    started: float = field(default_factory=perf_counter)
    root_path: str = ""  # of the outermost app, to turn mount prefixes into routes
    route: str | None = None
    endpoint: str | None = None
    provider_id: str | None = None
    provider_title: str | None = None
    apps: list[str] = field(default_factory=list)
    status: int | None = None
    error: str | None = None
    duration_ms: float | None = None
    dependencies: list[DependencyNode] = field(default_factory=list)
    databases: dict[str, DatabaseUse] = field(default_factory=dict)
    # Outbound calls (HTTP, AWS, Redis, fakes) by target: depstrace.calls.
    outbound: dict[Any, Any] = field(default_factory=dict)
    response_done: bool = False  # the last body chunk was sent: what runs now is a background task
    # Live objects, dropped when the record closes: the original callable of each
    # dependency node (by node id), the overrides provider, every app passed through.
    calls: list[Any] = field(default_factory=list)
    provider: Any = None
    app_objects: list[Any] = field(default_factory=list)
    live_findings: list[Any] = field(default_factory=list)  # Finding objects found while running
    on_solving: Any = None  # called once when FastAPI starts solving (set when observers listen)
    # Per-observer state (an OpenTelemetry parent context, ...), keyed by observer name.
    extras: dict[str, Any] = field(default_factory=dict)
    # The solver's view of FastAPI's dependency cache (depstrace.fastapi._in_cache):
    # the cache object, the ids of the callables heading its keys, how many keys read.
    cache_seen: Any = None
    cache_calls: set[int] = field(default_factory=set)
    cache_read: int = 0

    def note_statement(self, engine: EngineInfo, operation: str) -> DatabaseUse:
        """Count one statement on ``engine`` (called from the SQLAlchemy listener)."""
        use = self.databases.get(engine.id)
        if use is None:
            use = self.databases[engine.id] = DatabaseUse(engine)
        use.statements += 1
        use.operations[operation] = use.operations.get(operation, 0) + 1
        if operation in WRITES:
            use.pending_writes += 1
        return use

    def note_connection(self, engine: EngineInfo) -> DatabaseUse:
        """Count one pool checkout of ``engine`` (called from the pool listener)."""
        use = self.databases.get(engine.id)
        if use is None:
            use = self.databases[engine.id] = DatabaseUse(engine)
        use.connections += 1
        return use

    def provider_of(self, engine_id: str) -> DependencyNode | None:
        """The dependency that produced the value bound to ``engine_id``, if any.

        A dependency that merely holds a session it was given (a repository
        class whose ``__init__`` takes ``Depends(get_session)``, a function
        returning ``Service(session)``) is bound to the same engine as the one
        that produced the session, and starts first.  The producer is the
        first bound node none of whose sub-dependencies is bound to the
        engine, preferring a node whose value *is* the session/engine over one
        that holds it in an attribute.
        """
        bound = [node for node in self.dependencies if node.engine_id == engine_id]
        if len(bound) <= 1:
            return bound[0] if bound else None
        by_id = {node.id: node for node in self.dependencies}
        holders: set[int] = set()  # bound nodes with a bound node below them
        for node in bound:
            parent = by_id.get(node.parent) if node.parent is not None else None
            while parent is not None and parent.id not in holders:
                if parent.engine_id == engine_id:
                    holders.add(parent.id)
                parent = by_id.get(parent.parent) if parent.parent is not None else None
        producers = [node for node in bound if node.id not in holders]
        return next((node for node in producers if not node.engine_held), producers[0])

    def chain(self, node: DependencyNode) -> list[DependencyNode]:
        """``node`` and its parents up to the endpoint, innermost first."""
        by_id = {n.id: n for n in self.dependencies}
        chain = [node]
        while chain[-1].parent is not None and chain[-1].parent in by_id:
            chain.append(by_id[chain[-1].parent])
        return chain
