"""SQLAlchemy probe: the engine registry and per-statement attribution.

Listeners sit on the ``Engine`` *class*, so engines created before depstrace was
enabled (module-level globals built at import time) are seen on their first
statement; async engines fire on their ``sync_engine``.  ``create_engine`` is
wrapped only to learn where and when an engine was created.  The statement
listener is the hot path: one dict lookup for the engine, one regex match for
the operation, one contextvar read.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import weakref
from asyncio import get_running_loop
from collections.abc import Callable, Hashable
from types import FrameType
from typing import TYPE_CHECKING, Any

from depstrace import _origin, guard
from depstrace._context import current_request, test_phase
from depstrace._envorigin import origin as env_origin
from depstrace._failopen import report_internal_error
from depstrace._order import settings_holding
from depstrace._origin import describe_origin
from depstrace._records import EngineInfo, RequestRecord
from depstrace._redact import database_name, redact_url
from depstrace._sites import caller_site, library_dir
from depstrace._sql import TRANSACTION_CONTROL, operation_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from depstrace._patching import PatchRegistry

# Frames in these directories are never "the user's create_engine call".
_skip_dirs: tuple[str, ...] = ()


class EngineRegistry:
    """Every engine seen during the run, by identity, with a short stable id."""

    def __init__(self) -> None:
        self._by_key: dict[int, tuple[weakref.ref[Any], EngineInfo]] = {}
        self._stores: dict[Hashable, EngineInfo] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.on_new: Callable[[EngineInfo], None] | None = None

    def lookup(self, engine: Engine | EngineInfo) -> EngineInfo:
        """The info for ``engine``, registering it (site unknown) on first sight; a
        store's :class:`EngineInfo` (from :func:`engine_of`) is returned as it is."""
        hit = self._by_key.get(id(engine))
        if hit is not None and hit[0]() is engine:
            return hit[1]
        if isinstance(engine, EngineInfo):
            return engine
        return self.register(engine, created_at=None, created_phase=None, created_test=None)

    def find(self, engine: Engine) -> EngineInfo | None:
        """The info for ``engine`` if it was registered, without registering it."""
        hit = self._by_key.get(id(engine))
        return hit[1] if hit is not None and hit[0]() is engine else None

    def known(self) -> list[EngineInfo]:
        """Every live engine and store registered so far, in order of first sight."""
        with self._lock:
            infos = [info for ref, info in self._by_key.values() if ref() is not None]
            infos.extend(self._stores.values())
        return sorted(infos, key=lambda info: int(info.id[1:]))

    def register(
        self,
        engine: Engine,
        *,
        created_at: str | None,
        created_phase: str | None,
        created_test: str | None,
        creator: bool = False,
    ) -> EngineInfo:
        """Record ``engine`` (idempotent: a known engine keeps its first info); ``creator``:
        it was made with ``creator=`` or ``async_creator=``."""
        with self._lock:
            known = self.find(engine)
            if known is not None:
                return known
            url = engine.url
            names = env_vars_for(url)
            info = EngineInfo(
                id=f"e{next(self._counter)}",
                url=redact_url(url),
                backend=url.get_backend_name(),
                driver=url.get_driver_name(),
                database=database_name(url),
                created_at=created_at,
                created_phase=created_phase,
                created_test=created_test,
                host=url.host or None,
                port=url.port,
                env_vars=names,
                # Rare (a variable holds this very URL): worth a look at where it came from.
                env_origins={name: env_origin(name) for name in names},
                # the fixture making it now: one made by a shared-scope fixture is no
                # order effect (depstrace._order)
                created_fixture=test_phase().fixture if created_test is not None else None,
                from_settings=settings_holding(url),
                creator=creator or _has_creator(engine),
            )
            key = id(engine)

            def forget(_: object, key: int = key) -> None:
                self._by_key.pop(key, None)

            self._by_key[key] = (weakref.ref(engine, forget), info)
            _pools[id(engine.pool)] = (weakref.ref(engine.pool), info)
        if info.creator and info.backend == "sqlite":
            _watch_creator(engine, info)
        if self.on_new is not None:
            self.on_new(info)
        return info

    def register_store(
        self,
        key: Hashable,
        *,
        url: str,
        backend: str,
        driver: str,
        database: str | None,
        host: str | None,
        port: int | None,
        created_at: str | None = None,
        created_phase: str | None = None,
    ) -> EngineInfo:
        """An :class:`EngineInfo` for a store used without SQLAlchemy (pymongo,
        asyncpg, psycopg), keyed on ``key`` (say ``("mongodb", host, port, db)``);
        ``url`` must already be redacted.  Ids share the ``e1, e2, ...`` sequence."""
        with self._lock:
            known = self._stores.get(key)
            if known is not None:
                return known
            info = self._stores[key] = EngineInfo(
                id=f"e{next(self._counter)}",
                url=url,
                backend=backend,
                driver=driver,
                database=database,
                created_at=created_at,
                created_phase=created_phase,
                created_test=test_phase().nodeid if created_phase is not None else None,
                host=host,
                port=port,
            )
        if self.on_new is not None:
            self.on_new(info)
        return info

    def clear(self) -> None:
        """Forget every engine (a new trace session starts numbering at e1)."""
        with self._lock:
            self._by_key.clear()
            self._stores.clear()
            self._counter = itertools.count(1)


registry = EngineRegistry()
# id(pool) -> (the pool, its engine's info or None when no known engine owns it)
_pools: dict[int, tuple[weakref.ref[Any], EngineInfo | None]] = {}

OutsideSink = Callable[[EngineInfo, str], None]
_outside_sink: OutsideSink | None = None
CommitSink = Callable[[EngineInfo], None]
_outside_commit_sink: CommitSink | None = None
# (engine, transaction control seen) -> None: a checkout, or a BEGIN/COMMIT on it
_outside_connection_sink: Callable[[EngineInfo, bool], object] | None = None


def module_factory(frame: FrameType, engine_id: str) -> str | None:
    """The module-level name (``SessionLocal``, ``engine``) in ``frame``'s globals that
    opened ``engine_id``; session factories win over the engine they wrap."""
    module = frame.f_globals.get("__name__", "?")
    found: list[tuple[bool, str]] = []
    for name, value in list(frame.f_globals.items()):
        kind = type(value)
        if not kind.__module__.startswith("sqlalchemy"):
            continue
        engine = engine_of(value)
        if engine is not None and registry.lookup(engine).id == engine_id:
            found.append(("ngine" in kind.__name__, f"{module}.{name}"))
    return min(found)[1] if found else None


_origin.factory_finders.append(module_factory)


def env_vars_for(url: Any) -> tuple[str, ...]:
    """Names of environment variables whose value is ``url`` (once per engine)."""
    from sqlalchemy.engine import make_url

    names = []
    for name, value in os.environ.items():
        if "://" not in value or len(value) > 2048:
            continue
        try:
            if make_url(value.strip()) == url:
                names.append(name)
        except Exception:  # not a URL SQLAlchemy understands
            continue
    return tuple(sorted(names))


def _before_cursor_execute(  # noqa: PLR0917 - SQLAlchemy's event signature
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    try:
        operation = operation_of(statement)
        if operation not in TRANSACTION_CONTROL:
            info = registry.lookup(conn.engine)
            if info.creator:
                _creator_statement(info, cursor)
            attribute(info, operation, _outside_sink)
        else:
            _saw_transaction_control(registry.lookup(conn.engine))
    except Exception:  # the tracer never breaks the application it observes
        report_internal_error("statement listener")


def _guarded_before_cursor_execute(  # noqa: PLR0917 - SQLAlchemy's event signature
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    """:func:`_before_cursor_execute` when the guard is on: counted, then judged; a
    refusal raises here, so the statement never reaches the driver."""
    try:
        operation = operation_of(statement)
        info = registry.lookup(conn.engine)
        if info.creator:
            _creator_statement(info, cursor)
        if operation not in TRANSACTION_CONTROL:
            attribute(info, operation, _outside_sink)
        else:
            _saw_transaction_control(info)
    except Exception:  # the tracer never breaks the application it observes
        report_internal_error("statement listener")
        return
    guard.check(info, operation, statement, conn.info)


def _guarded_commit(conn: Any) -> None:
    try:
        guard.check_commit(registry.find(conn.engine), conn.info)
    except guard.GuardRefused:
        # SQLAlchemy forgets a transaction whose commit raised, but the driver's is
        # still open: roll it back, or the next COMMIT on this connection would land it.
        conn.engine.dialect.do_rollback(conn.connection)
        guard.forget_transaction(conn.info)
        raise


def _guarded_rollback(conn: Any, *args: Any) -> None:
    guard.forget_transaction(conn.info)


def attribute(info: EngineInfo, operation: str, outside: OutsideSink | None) -> None:
    """Count one statement on the running request, else hand it to ``outside``.

    The hot path for every store (SQLAlchemy here, drivers in depstrace.stores).
    The first statement of a request on a *non-test* engine also records where
    user code reached it from: a finding is coming, and only then is the stack read.
    """
    record = current_request.get()
    if record is not None:
        use = record.note_statement(info, operation)
        if info.is_test is False and use.origin is None:
            use.origin = describe_origin(
                info.id, endpoint=record.endpoint, phase=_request_stage(record)
            )
    elif outside is not None:
        outside(info, operation)


def _request_stage(record: RequestRecord) -> str:
    if record.response_done:
        return "a background task (after the response was sent):"
    if record.endpoint is None and not record.dependencies:
        return "a middleware (before any dependency was solved):"
    return ""


def _transaction_event(kind: str) -> Callable[..., None]:
    def listener(conn: Any, *args: Any) -> None:
        try:
            record = current_request.get()
            if record is None:
                if kind == "commit" and _outside_commit_sink is not None:
                    info = registry.find(conn.engine)
                    if info is not None:
                        _outside_commit_sink(info)
                return
            info = registry.find(conn.engine)
            use = record.databases.get(info.id) if info is not None else None
            if use is None:
                return
            if kind == "commit":
                use.commits += 1
            else:
                use.discarded_writes += use.pending_writes
            use.pending_writes = 0
        except Exception:
            report_internal_error("transaction listener")

    return listener


# --- event loops of pooled async connections -------------------------------------

_LOOP_KEY = "depstrace_loop"
LoopSink = Callable[[EngineInfo, str], None]
_loop_sink: LoopSink | None = None


def _running_loop() -> Any:
    try:
        return get_running_loop()  # bound at import: tests patch asyncio's attributes
    except RuntimeError:
        return None


# Async drivers whose connections belong to the event loop that opened them: used from
# another loop they fail ("got Future ... attached to a different loop", "another
# operation is in progress", "Event loop is closed").  Each entry is proven by a test
# that reproduces the failure without depstrace (tests/test_loops.py).  Not here, because
# their connections work from any loop: aiosqlite (a thread per connection; futures are
# made on the loop that awaits) and psycopg's AsyncConnection (it waits on the socket
# through the running loop).  Drivers not tested (aioodbc, oracledb) are not judged.
LOOP_BOUND_DRIVERS = frozenset({"asyncpg", "aiomysql", "asyncmy"})
_drivers: dict[type, str | None] = {}


def _loop_bound_driver(dbapi_connection: Any) -> str | None:
    """The driver of a pooled connection when it binds connections to their loop
    (``asyncpg``), else None; judged once per connection type."""
    kind = type(dbapi_connection)
    try:
        return _drivers[kind]
    except KeyError:
        pass
    driver = getattr(dbapi_connection, "driver_connection", None)  # AdaptedConnection
    package = type(driver).__module__.partition(".")[0] if driver is not None else ""
    _drivers[kind] = package if package in LOOP_BOUND_DRIVERS else None
    return _drivers[kind]


def _pool_connect(dbapi_connection: Any, connection_record: Any) -> None:
    try:
        driver = _loop_bound_driver(dbapi_connection)
        if driver is None:
            return  # a sync driver, or an async one whose connections work on any loop
        loop = _running_loop()
        if loop is not None:
            connection_record.info[_LOOP_KEY] = (id(loop), _loop_label(loop), driver)
    except Exception:
        report_internal_error("pool connect listener")


def _pool_checkout(dbapi_connection: Any, connection_record: Any, proxy: Any) -> None:
    try:
        _note_checkout(getattr(proxy, "_pool", None))
    except Exception:
        report_internal_error("pool checkout listener")
    try:
        created = connection_record.info.get(_LOOP_KEY)
        if created is None:
            return
        loop = _running_loop()
        if loop is None or id(loop) == created[0]:
            return
        engine = _engine_of_pool(getattr(proxy, "_pool", None))
        if engine is not None and _loop_sink is not None:
            _loop_sink(
                registry.lookup(engine),
                f"a pooled {created[2]} connection created on event loop {created[1]} was "
                f"checked out on event loop {_loop_label(loop)}",
            )
    except Exception:
        report_internal_error("pool checkout listener")


def _note_checkout(pool: Any) -> None:
    """A connection of ``pool`` was checked out: a use of its engine's database even when
    no statement event follows (``raw_connection().cursor().execute(...)``)."""
    info = _pool_info(pool)
    if info is None:
        return
    record = current_request.get()
    if record is not None:
        use = record.note_connection(info)
        if use.connections == 1 and info.is_test is False and use.origin is None:
            use.connection_origin = describe_origin(
                info.id, endpoint=record.endpoint, phase=_request_stage(record)
            )
    elif _outside_connection_sink is not None and info.is_test is not True:
        # A test database's checkouts outside requests say nothing the statements do not.
        _outside_connection_sink(info, False)


def _saw_transaction_control(info: EngineInfo) -> None:
    """A BEGIN/COMMIT/SAVEPOINT went through SQLAlchemy: the connection was observed, so
    its checkout is no unobserved use (transaction control is never a statement)."""
    record = current_request.get()
    if record is not None:
        use = record.databases.get(info.id)
        if use is not None:
            use.controls += 1
    elif _outside_connection_sink is not None and info.is_test is not True:
        _outside_connection_sink(info, True)


def _pool_info(pool: Any) -> EngineInfo | None:
    """The info of the known engine owning ``pool`` (looked for once per pool)."""
    held = _pools.get(id(pool))
    if held is not None and held[0]() is pool:
        return held[1]
    if pool is None:
        return None
    engine = _engine_of_pool(pool)
    info = registry.find(engine) if engine is not None else None
    if len(_pools) > 4096:
        _pools.clear()
    _pools[id(pool)] = (weakref.ref(pool), info)
    return info


# --- engines made with creator= ----------------------------------------------------


def _has_creator(engine: Any) -> bool:
    """Whether the pool connects through a user's callable rather than the URL."""
    made = getattr(getattr(engine, "pool", None), "_creator_arg", None)
    return made is not None and not getattr(made, "__module__", "").startswith("sqlalchemy.")


def _watch_creator(engine: Any, info: EngineInfo) -> None:
    """Read the SQLite file a creator engine really opened, on its first connection."""
    from sqlalchemy import event

    def connect(dbapi_connection: Any, connection_record: Any) -> None:
        if _loop_sink is None:
            return  # depstrace was turned off since
        try:
            _resolve_sqlite_file(dbapi_connection, info)
        except Exception:
            report_internal_error("creator engine")

    event.listen(engine, "connect", connect, once=True)


def _creator_statement(info: EngineInfo, cursor: Any) -> None:
    """A statement on a creator engine whose file is not known yet: one registered after
    its first connection (created before depstrace was enabled) is resolved here, once."""
    if info.backend == "sqlite" and not info.creator_checked:
        connection = getattr(cursor, "connection", None)
        if connection is not None:
            _resolve_sqlite_file(connection, info)


def _resolve_sqlite_file(dbapi_connection: Any, info: EngineInfo) -> None:
    """``PRAGMA database_list`` on the raw connection (no SQLAlchemy event fires): an empty
    file is SQLite in memory indeed; a path is judged as if the URL had named it."""
    if not info.creator or info.creator_checked:
        return
    info.creator_checked = True  # once, even if it fails: the engine stays no test database
    cursor = dbapi_connection.cursor()  # the DBAPI connection (aiosqlite's sync adapter too)
    try:
        cursor.execute("PRAGMA database_list")
        rows = cursor.fetchall()
    finally:
        cursor.close()
    path = next((row[2] for row in rows if row[1] == "main"), None)
    if path is None:
        return  # not told: the engine stays a creator engine, not a test database
    if path:
        url = f"sqlite:///{path}"
        info.url = redact_url(url)
        info.database = database_name(url)
    info.creator = False
    info.is_test = None
    if registry.on_new is not None:
        registry.on_new(info)  # the engine record again, with the file and its verdict


def _loop_label(loop: Any) -> str:
    return f"{type(loop).__name__}@{id(loop):x}"


def _engine_of_pool(pool: Any) -> Any:
    for ref, _info in list(registry._by_key.values()):
        engine = ref()
        if engine is not None and engine.pool is pool:
            return engine
    return None


def install(
    patches: PatchRegistry,
    outside_sink: OutsideSink,
    loop_sink: LoopSink,
    outside_commit_sink: CommitSink | None = None,
    outside_connection_sink: Callable[[EngineInfo, bool], object] | None = None,
) -> bool:
    """Install the listeners and the ``create_engine`` wrapper; False without SQLAlchemy."""
    global _outside_sink, _skip_dirs, _loop_sink, _outside_commit_sink, _outside_connection_sink
    try:
        import sqlalchemy
        import sqlalchemy.engine.create as create_module
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
    except ImportError:
        return False
    _outside_sink = outside_sink
    _loop_sink = loop_sink
    _outside_commit_sink = outside_commit_sink
    _outside_connection_sink = outside_connection_sink
    _skip_dirs = (library_dir(sqlalchemy),)
    original = create_module.create_engine

    def create_engine(*args: Any, **kwargs: Any) -> Any:
        engine = original(*args, **kwargs)
        try:
            site, phase = caller_site(_skip_dirs)
            registry.register(
                engine,
                created_at=site,
                created_phase=phase,
                created_test=test_phase().nodeid,
                creator="creator" in kwargs or "async_creator" in kwargs,
            )
        except Exception:
            report_internal_error("create_engine wrapper")
        return engine

    create_engine.__wrapped__ = original  # type: ignore[attr-defined]
    create_engine.__doc__ = original.__doc__
    patches.rebind_everywhere(original, create_engine)
    guarded = guard.mode() != "off"  # chosen once: with the guard off it costs nothing
    patches.listen(
        Engine,
        "before_cursor_execute",
        _guarded_before_cursor_execute if guarded else _before_cursor_execute,
        add=event.listen,
        remove=event.remove,
    )
    if guarded:
        _guard_raw_connection(patches, Engine)
        patches.listen(Engine, "commit", _guarded_commit, add=event.listen, remove=event.remove)
        patches.listen(Engine, "rollback", _guarded_rollback, add=event.listen, remove=event.remove)
    for name, kind in (
        ("commit", "commit"),
        ("release_savepoint", "commit"),
        ("rollback", "rollback"),
        ("rollback_savepoint", "rollback"),
    ):
        patches.listen(
            Engine, name, _transaction_event(kind), add=event.listen, remove=event.remove
        )
    from sqlalchemy.pool import Pool

    patches.listen(Pool, "connect", _pool_connect, add=event.listen, remove=event.remove)
    patches.listen(Pool, "checkout", _pool_checkout, add=event.listen, remove=event.remove)
    return True


_CONNECTION_MODULE = "sqlalchemy.engine.base"


def _guard_raw_connection(patches: PatchRegistry, engine_class: Any) -> None:
    """With the guard on, ``Engine.raw_connection()`` called by user code (not by
    SQLAlchemy's own ``Connection``, whose statements the guard judges one by one) is
    judged before the pool hands the DBAPI connection out."""
    original = engine_class.raw_connection

    def raw_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
        # SQLAlchemy's Connection (engine.connect(), a Session) gets its DBAPI connection
        # here too, from sqlalchemy.engine.base: those statements are judged one by one.
        if sys._getframe(1).f_globals.get("__name__") != _CONNECTION_MODULE:
            try:
                info: EngineInfo | None = registry.lookup(self)
            except Exception:
                report_internal_error("guard (raw_connection)")
                info = None
            if info is not None:
                guard.check_raw_connection(info)
        return original(self, *args, **kwargs)

    raw_connection.__wrapped__ = original  # type: ignore[attr-defined]
    raw_connection.__doc__ = original.__doc__
    patches.patch(engine_class, "raw_connection", raw_connection)


def uninstall() -> None:
    """Forget module state (the patches themselves are undone by the registry)."""
    global _outside_sink, _loop_sink, _outside_commit_sink, _outside_connection_sink
    _outside_connection_sink = None
    _pools.clear()
    _outside_sink = None
    _loop_sink = None
    _outside_commit_sink = None
    registry.clear()
    _extractors.clear()
    _type_names.clear()


# --- which engine does a dependency's value use? -------------------------------

Extractor = Callable[[Any], Any]
_extractors: dict[type, Extractor | None] = {}
# Choosers for values of stores used without SQLAlchemy (depstrace.stores): type ->
# an extractor that returns the store's EngineInfo, or None for a type they do not know.
store_choosers: list[Callable[[type], Extractor | None]] = []


def engine_of(value: Any) -> Engine | EngineInfo | None:
    """The sync ``Engine`` behind a Session/Engine/sessionmaker/... value, or None;
    for a pymongo/asyncpg/psycopg value, the store's :class:`EngineInfo`.

    The extractor is chosen once per type.  Plain objects (a repository or
    service class holding a session) are looked into one level deep.
    """
    kind = type(value)
    try:
        extractor = _extractors[kind]
    except KeyError:
        extractor = _extractors[kind] = _choose_extractor(kind)
    if extractor is None:
        return None
    try:
        return extractor(value)  # type: ignore[no-any-return]
    except Exception:
        return None


def holds_engine(value: Any) -> bool:
    """Whether :func:`engine_of` found ``value``'s engine in one of its attributes
    (a repository or service holding a session) rather than in the value itself."""
    return _extractors.get(type(value)) is _attribute_engine


def _normalize(bind: Any) -> Any:
    if bind is None:
        return None
    sync_engine = getattr(bind, "sync_engine", None)  # AsyncEngine, AsyncConnection
    if sync_engine is not None:
        return sync_engine
    return getattr(bind, "engine", None)  # Engine.engine is itself; Connection.engine


def _session_engine(session: Any) -> Any:
    bind = session.bind
    if bind is None:
        try:
            bind = session.get_bind()
        except Exception:  # unbound, or bound per mapper only
            return None
    return _normalize(bind)


def _factory_engine(factory: Any) -> Any:
    return _normalize(factory.kw.get("bind"))


def _scoped_engine(scoped: Any) -> Any:
    return _factory_engine(scoped.session_factory)


def _attribute_engine(value: Any) -> Any:
    for attribute in list(vars(value).values())[:32]:
        if type(attribute) is not type(value) and _looks_like_sqlalchemy(type(attribute)):
            engine = engine_of(attribute)
            if engine is not None:
                return engine
    return None


def _looks_like_sqlalchemy(kind: type) -> bool:
    return kind.__module__.startswith("sqlalchemy.")


def _choose_extractor(kind: type) -> Extractor | None:
    if "sqlalchemy" in sys.modules and _looks_like_sqlalchemy(kind):
        from sqlalchemy.engine import Connection, Engine
        from sqlalchemy.orm import Session, scoped_session, sessionmaker

        table: list[tuple[type, Extractor]] = [
            (Engine, _normalize),
            (Connection, _normalize),
            (Session, _session_engine),
            (sessionmaker, _factory_engine),
            (scoped_session, _scoped_engine),
        ]
        if "sqlalchemy.ext.asyncio" in sys.modules:
            from sqlalchemy.ext import asyncio as sa_asyncio

            table += [
                (sa_asyncio.AsyncEngine, _normalize),
                (sa_asyncio.AsyncConnection, _normalize),
                (sa_asyncio.AsyncSession, lambda s: _session_engine(s.sync_session)),
                (sa_asyncio.async_sessionmaker, _factory_engine),
                (sa_asyncio.async_scoped_session, _scoped_engine),
            ]
        for base, extractor in table:
            if issubclass(kind, base):
                return extractor
        return None
    for choose in store_choosers:
        store_extractor = choose(kind)
        if store_extractor is not None:
            return store_extractor
    if kind.__module__ == "builtins" or not hasattr(kind, "__dict__"):
        return None
    return _attribute_engine


_type_names: dict[type, str] = {}


def value_type(value: Any) -> str:
    """``module:qualname`` of the value's type, for the record (built once per type)."""
    kind = type(value)
    name = _type_names.get(kind)
    if name is None:
        name = f"{kind.__module__}:{kind.__qualname__}"
        if len(_type_names) < 4096:
            _type_names[kind] = name
    return name
