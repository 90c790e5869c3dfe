"""asyncpg and psycopg used without SQLAlchemy: one count per statement, never two.

The statement methods are patched on the driver classes (``asyncpg.Connection``
and ``PreparedStatement``; psycopg's ``Cursor``, ``AsyncCursor`` and server-side
cursors, which ``Connection.execute`` goes through), so connections opened
before instrumentation are seen too.  The hot path is one contextvar read and
one weak-dictionary lookup that maps the driver connection to its store,
filled on the connection's first statement from its own parameters (host,
port, database, user; never the password).

SQLAlchemy's asyncpg and psycopg dialects drive the same classes, and the
SQLAlchemy listener already counts their statements.  A class-level listener
on SQLAlchemy's ``Pool`` marks each driver connection SQLAlchemy opens or
checks out, before its first statement, and marked connections are skipped.

Statements that read and write no data are not counted: transaction control
(``BEGIN``, ``COMMIT``, ``ROLLBACK``, ``SAVEPOINT``, ``RELEASE``: asyncpg's
``Transaction`` sends them through ``execute``, and the SQLAlchemy listener
skips them too) and the reset query asyncpg's pool runs when a connection goes
back to it.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from depstrace import _sql, guard
from depstrace._failopen import report_internal_error
from depstrace._records import EngineInfo
from depstrace._redact import redact_url
from depstrace._sql import TRANSACTION_CONTROL, operation
from depstrace.sqlalchemy import registry
from depstrace.stores import note

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry

_UNSEEN: Any = object()

# driver connection -> its store, or None for a connection SQLAlchemy drives
_infos: weakref.WeakKeyDictionary[Any, EngineInfo | None] = weakref.WeakKeyDictionary()
# True while asyncpg resets a connection for its pool (driver housekeeping)
_housekeeping: ContextVar[bool] = ContextVar("depstrace_driver_housekeeping", default=False)
_watching_sqlalchemy = False


def statement(connection: Any, query: Any, operation: str | None = None) -> None:
    """Count one statement sent on the driver ``connection`` (the hot path)."""
    try:
        if connection is None or _housekeeping.get():
            return
        info = _infos.get(connection, _UNSEEN)
        if info is _UNSEEN:
            info = _first_sight(connection)
        if info is None:  # SQLAlchemy's connection: its listener counts it
            return
        if operation is None:
            operation = operation_of(query, connection)
        if operation not in TRANSACTION_CONTROL:
            note(info, operation)
    except Exception:  # the tracer never breaks the application it observes
        report_internal_error("driver statement hook")


def guarded_statement(connection: Any, query: Any, operation: str | None = None) -> None:
    """:func:`statement` when the guard is on: counted, then judged; a refusal raises
    before the driver method runs.  (A second classification, in guard mode only, keeps
    :func:`statement` exactly as it is without the guard.)"""
    statement(connection, query, operation)
    try:
        if connection is None or _housekeeping.get():
            return
        info = _infos.get(connection)  # the first sight was in statement()
        if info is None:
            return
        if operation is None:
            operation = operation_of(query, connection)
    except Exception:
        report_internal_error("driver statement hook (guard)")
        return
    guard.check(info, operation, "" if query is None else query, connection)


# What the patched methods call: chosen when they are patched, so the guard costs
# nothing when it is off.
_hook: Callable[..., object] = statement


def operation_of(query: Any, connection: Any = None) -> str:
    """The statement's first keyword, upper-cased, for a str, bytes, psycopg
    ``sql.Composable`` or template query; ``?`` when there is none."""
    if isinstance(query, str):  # the common case: classified once per statement string
        return _sql.operation_of(query)
    if isinstance(query, (bytes, bytearray, memoryview)):
        return operation(bytes(query[:256]).decode("ascii", "replace"))
    as_string = getattr(query, "as_string", None)  # psycopg.sql.SQL / Composed
    if as_string is not None:
        return operation(as_string(connection))
    strings = getattr(query, "strings", None)  # a t-string Template (Python >= 3.14)
    if isinstance(strings, tuple) and strings and isinstance(strings[0], str):
        return operation(strings[0])
    return "?"


def connection_info(connection: Any) -> EngineInfo | None:
    """The store of a driver connection; None when SQLAlchemy drives it."""
    info = _infos.get(connection, _UNSEEN)
    return _first_sight(connection) if info is _UNSEEN else info


def driver_of(kind: type) -> str | None:
    """``asyncpg`` or ``psycopg`` when ``kind`` is (a subclass of) one of their
    connection classes, else None; cached per type."""
    try:
        return _driver_kinds[kind]
    except KeyError:
        pass
    driver = None
    for name, module, attributes in (
        ("asyncpg", "asyncpg.connection", ("Connection",)),
        ("psycopg", "psycopg", ("Connection", "AsyncConnection")),
    ):
        for attribute in attributes:
            base = getattr(sys.modules.get(module), attribute, None)
            if isinstance(base, type) and issubclass(kind, base):
                driver = name
    _driver_kinds[kind] = driver
    return driver


_driver_kinds: dict[type, str | None] = {}


def _first_sight(connection: Any) -> EngineInfo | None:
    driver = driver_of(type(connection))
    if driver == "asyncpg":
        host, port, database, user = _asyncpg_params(connection)
    elif driver == "psycopg":
        host, port, database, user = _psycopg_params(connection)
    else:
        return None
    info = registry.register_store(
        ("postgresql", driver, host, port, database, user),
        url=store_url(driver, host, port, database, user),
        backend="postgresql",
        driver=driver,
        database=database,
        host=host,
        port=port,
    )
    _infos[connection] = info
    return info


Params = tuple[str | None, int | None, str | None, str | None]  # host, port, database, user


def _asyncpg_params(connection: Any) -> Params:
    address = getattr(connection, "_addr", None)
    params = getattr(connection, "_params", None)
    host: str | None
    port: int | None
    if isinstance(address, tuple):
        host, port = str(address[0]), int(address[1])
    elif isinstance(address, str):  # a UNIX socket: /run/postgresql/.s.PGSQL.5432
        directory, _, name = address.rpartition("/")
        suffix = name.rpartition(".")[2]
        host, port = directory or "/", int(suffix) if suffix.isdigit() else None
    else:
        host, port = None, None
    return host, port, getattr(params, "database", None), getattr(params, "user", None)


def _psycopg_params(connection: Any) -> Params:
    info = connection.info
    return info.host or None, info.port or None, info.dbname or None, info.user or None


def store_url(
    driver: str, host: str | None, port: int | None, database: str | None, user: str | None
) -> str:
    """``postgresql+<driver>://user@host:port/database`` (socket directories as ``?host=``)."""
    userinfo = f"{quote(user, safe='')}@" if user else ""
    query = ""
    if host is not None and host.startswith("/"):
        netloc = userinfo
        query = f"?host={quote(host, safe='/')}" + (f"&port={port}" if port else "")
    else:
        netloc = userinfo + (f"[{host}]" if host and ":" in host else host or "")
        if port:
            netloc += f":{port}"
    path = quote(database or "", safe="")
    return redact_url(f"postgresql+{driver}://{netloc}/{path}{query}")


# --- patches --------------------------------------------------------------------


def _query_method(original: Callable[..., Any], connection_of: Callable[[Any], Any]) -> Any:
    """A method whose first argument is the query (``execute``, ``fetch``, ``copy``...),
    coroutine function or not; the wrapper keeps the original's calling convention."""
    import inspect

    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def async_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            _hook(connection_of(self), _query_argument(args, kwargs))
            return await original(self, *args, **kwargs)

        return async_wrapper

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        _hook(connection_of(self), _query_argument(args, kwargs))
        return original(self, *args, **kwargs)

    return wrapper


def _query_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if args:
        return args[0]
    return kwargs.get("query", kwargs.get("statement"))


def _prepared_method(original: Callable[..., Any]) -> Any:
    """``PreparedStatement.fetch(...)`` and friends: the query lives on the statement."""

    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        _hook(getattr(self, "_connection", None), _prepared_query(self))
        return await original(self, *args, **kwargs)

    return wrapper


def _prepared_cursor(original: Callable[..., Any]) -> Any:
    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        _hook(getattr(self, "_connection", None), _prepared_query(self))
        return original(self, *args, **kwargs)

    return wrapper


def _prepared_query(prepared: Any) -> Any:
    get_query = getattr(prepared, "get_query", None)
    return get_query() if get_query is not None else getattr(prepared, "_query", None)


def _copy_method(original: Callable[..., Any]) -> Any:
    """asyncpg's ``copy_*`` methods take a table or a query: always a ``COPY``."""

    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        _hook(self, None, "COPY")
        return await original(self, *args, **kwargs)

    return wrapper


def _housekeeping_method(original: Callable[..., Any]) -> Any:
    """asyncpg's ``Connection.reset``: what it executes is not the application's."""

    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = _housekeeping.set(True)
        try:
            return await original(self, *args, **kwargs)
        finally:
            _housekeeping.reset(token)

    return wrapper


def _patch_own(
    patches: PatchRegistry, owner: type, names: tuple[str, ...], make: Callable[..., Any]
) -> None:
    """Patch the methods ``owner`` itself defines (an inherited one is patched
    where it is defined, or it would be counted twice)."""
    for name in names:
        original = vars(owner).get(name)
        if callable(original):
            patches.patch(owner, name, make(original))


def _self(obj: Any) -> Any:
    return obj


def _connection_method(original: Callable[..., Any]) -> Any:
    return _query_method(original, connection_of=_self)


def _cursor_connection(cursor: Any) -> Any:
    return getattr(cursor, "connection", None)


def _cursor_method(original: Callable[..., Any]) -> Any:
    return _query_method(original, connection_of=_cursor_connection)


def _choose_hook() -> None:
    global _hook
    _hook = statement if guard.mode() == "off" else guarded_statement


def patch_asyncpg(patches: PatchRegistry) -> None:
    """Patch asyncpg's connection and prepared-statement methods."""
    _choose_hook()
    from asyncpg import connection, prepared_stmt

    queries = ("execute", "executemany", "fetch", "fetchval", "fetchrow", "fetchmany", "cursor")
    copies = ("copy_from_table", "copy_from_query", "copy_to_table", "copy_records_to_table")
    statements = ("fetch", "fetchval", "fetchrow", "fetchmany", "executemany")
    _patch_own(patches, connection.Connection, queries, _connection_method)
    _patch_own(patches, connection.Connection, copies, _copy_method)
    _patch_own(patches, connection.Connection, ("reset",), _housekeeping_method)
    _patch_own(patches, prepared_stmt.PreparedStatement, statements, _prepared_method)
    _patch_own(patches, prepared_stmt.PreparedStatement, ("cursor",), _prepared_cursor)
    _watch_sqlalchemy(patches)


def patch_psycopg(patches: PatchRegistry) -> None:
    """Patch psycopg's cursors (``Connection.execute`` runs through them)."""
    _choose_hook()
    import psycopg

    methods = ("execute", "executemany", "stream", "copy")
    for name in ("Cursor", "AsyncCursor", "ServerCursor", "AsyncServerCursor"):
        owner = getattr(psycopg, name, None)
        if isinstance(owner, type):
            _patch_own(patches, owner, methods, _cursor_method)
    _watch_sqlalchemy(patches)


def _watch_sqlalchemy(patches: PatchRegistry) -> None:
    """Mark the driver connections SQLAlchemy's pools open and check out."""
    global _watching_sqlalchemy
    if _watching_sqlalchemy or "sqlalchemy.pool" not in sys.modules:
        return
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    for name in ("connect", "checkout"):
        patches.listen(Pool, name, _sqlalchemy_connection, add=event.listen, remove=event.remove)
    _watching_sqlalchemy = True


def _sqlalchemy_connection(dbapi_connection: Any, connection_record: Any, *_: Any) -> None:
    try:
        driver = getattr(connection_record, "driver_connection", None) or dbapi_connection
        if driver_of(type(driver)) is not None:
            _infos[driver] = None
    except Exception:
        report_internal_error("SQLAlchemy pool listener (driver connections)")


def forget() -> None:
    """Forget every connection's store (a new session numbers stores anew)."""
    global _watching_sqlalchemy, _hook
    _hook = statement
    _infos.clear()
    _driver_kinds.clear()
    _watching_sqlalchemy = False


# --- which store does a dependency's value use? ----------------------------------


def extractor(kind: type) -> Callable[[Any], Any] | None:
    """How to get the :class:`EngineInfo` behind an asyncpg ``Connection``,
    pool connection or ``Pool``, or a psycopg connection or cursor."""
    table: list[tuple[str, str, Callable[[Any], Any]]] = [
        ("asyncpg.connection", "Connection", connection_info),
        ("asyncpg.pool", "PoolConnectionProxy", lambda proxy: connection_info(proxy._con)),
        ("asyncpg.pool", "Pool", _pool_info),
        ("psycopg", "Connection", connection_info),
        ("psycopg", "AsyncConnection", connection_info),
        ("psycopg", "Cursor", lambda cursor: connection_info(cursor.connection)),
        ("psycopg", "AsyncCursor", lambda cursor: connection_info(cursor.connection)),
    ]
    for module, name, function in table:
        base = getattr(sys.modules.get(module), name, None)
        if isinstance(base, type) and issubclass(kind, base):
            return function
    return None


def _pool_info(pool: Any) -> EngineInfo | None:
    """An asyncpg pool's store, from one of its open connections."""
    for holder in list(getattr(pool, "_holders", ())):
        connection = getattr(holder, "_con", None)
        if connection is not None:
            return connection_info(connection)
    return None
