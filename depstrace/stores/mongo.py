"""MongoDB through pymongo's command monitoring (``MongoClient``, ``AsyncMongoClient``, motor).

pymongo announces every command to the ``CommandListener`` objects registered
with :func:`pymongo.monitoring.register`; ``started(event)`` carries the
database name and the server address, which is all the test-database rule
needs.  The event fires in the thread (sync client) or task (async client) that
issued the command, so the request's contextvar is there; motor runs pymongo
in a thread pool but copies the context into it (motor >= 2.1).

pymongo has no ``unregister``, and a client copies the global listener list
when it is created.  So the listener is registered once per process and does
nothing while depstrace is not instrumented.  Clients created before that
first registration never see a global listener: the first time depstrace
attaches to an already imported pymongo, it looks for their listener objects
once among the live objects and adds its listener to each (see docs/stores.md).

Each ``(host, port, database)`` becomes one store with a URL of the form
``mongodb://host:port/database`` (no credentials: events carry none).
"""

from __future__ import annotations

import functools
import gc
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from depstrace import guard
from depstrace._failopen import report_internal_error
from depstrace._records import EngineInfo
from depstrace._redact import redact_url
from depstrace.sqlalchemy import registry
from depstrace.stores import note

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry

# Handshakes, liveness checks, authentication and session/cursor bookkeeping that
# pymongo sends by itself, and transaction control (sent to the admin database):
# none reads or writes the application's data, so none is a statement.
SKIPPED_COMMANDS = frozenset(
    {
        "commitTransaction",
        "abortTransaction",
        "hello",
        "isMaster",
        "ismaster",
        "ping",
        "endSessions",
        "killCursors",
        "saslStart",
        "saslContinue",
        "authenticate",
        "getnonce",
        "logout",
    }
)

_active = False
_listener: Any = None  # the one CommandListener registered in this process
_lock = threading.Lock()
_stores: dict[tuple[str, int | None, str], EngineInfo] = {}


def attach(*, existing_clients: bool = True) -> None:
    """Start counting commands (pymongo is imported); registers the listener once.

    ``existing_clients=False`` skips the search for clients created before the
    registration: right after pymongo's own import there can be none.
    """
    global _active, _listener
    from pymongo import monitoring

    with _lock:
        if _listener is None:
            _listener = _make_listener(monitoring)
            monitoring.register(_listener)
            if existing_clients:
                _attach_to_existing_clients(monitoring, _listener)
        _active = True


def detach() -> None:
    """Stop counting (the listener stays registered, inert) and forget the stores."""
    global _active
    _active = False
    _stores.clear()


def _make_listener(monitoring: Any) -> Any:
    class DepstraceCommandListener(monitoring.CommandListener):  # type: ignore[misc]
        """Counts each application command on the request that sent it."""

        def started(self, event: Any) -> None:
            if not _active:
                return
            try:
                name = event.command_name
                if name in SKIPPED_COMMANDS:
                    return
                host, port = _address(event.connection_id)
                note(store_info(host, port, event.database_name), name.upper())
            except Exception:  # the tracer never breaks the application it observes
                report_internal_error("pymongo command listener")

        def succeeded(self, event: Any) -> None:
            pass

        def failed(self, event: Any) -> None:
            pass

    return DepstraceCommandListener()


def guard_commands(patches: PatchRegistry) -> None:
    """Guard mode: judge each command where pymongo announces it to its listeners.

    pymongo calls every ``CommandListener.started`` inside a ``try`` that swallows
    what the listener raises, so a refusal cannot come from the listener: it is
    raised right after ``_EventListeners.publish_command_start`` returns, which
    pymongo calls before it sends the command (and outside the ``try`` around
    the send).  Only patched while the guard is on."""
    from pymongo import monitoring

    kind = getattr(monitoring, "_EventListeners", None)
    original = getattr(kind, "publish_command_start", None)
    if kind is None or original is None:
        return

    @functools.wraps(original)
    def publish_command_start(
        self: Any, command: Any, database_name: str, *args: Any, **kw: Any
    ) -> None:
        original(self, command, database_name, *args, **kw)
        judged = _judge(
            command, database_name, args[1] if len(args) > 1 else kw.get("connection_id")
        )
        if judged is not None:
            guard.check(judged[0], judged[1], "", judged[0], table=judged[2])

    patches.patch(kind, "publish_command_start", publish_command_start)


def _judge(command: Any, database: str, address: Any) -> tuple[EngineInfo, str, str | None] | None:
    """(store, operation, collection) of a command the guard judges, else None."""
    try:
        if not _active:
            return None
        name = next(iter(command))
        if name in SKIPPED_COMMANDS:
            return None
        operation = name.upper()
        if name == "aggregate" and any(
            isinstance(stage, dict) and ("$out" in stage or "$merge" in stage)
            for stage in command.get("pipeline", ())
        ):
            operation = "AGGREGATE $OUT"
        host, port = _address(address)
        collection = command.get(name)
        return (
            store_info(host, port, database),
            operation,
            collection if isinstance(collection, str) else None,
        )
    except Exception:
        report_internal_error("guard (pymongo command)")
        return None


def _attach_to_existing_clients(monitoring: Any, listener: Any) -> int:
    """Add ``listener`` to every client created before it was registered; how many.

    A client keeps its listeners in a private ``_EventListeners`` object whose
    command list it iterates per command; appending to that list (and setting
    the flag pymongo checks first) is what ``register`` would have done had it
    run earlier.  Instances of a Python class refer to their class, so the
    garbage collector finds them in one pass over live objects, in C; once
    per process.
    """
    kind = getattr(monitoring, "_EventListeners", None)
    if kind is None or not isinstance(kind, type):
        return 0
    attached = 0
    for obj in gc.get_referrers(kind):
        if type(obj) is not kind:
            continue
        commands = getattr(obj, "_EventListeners__command_listeners", None)
        if isinstance(commands, list) and listener not in commands:
            commands.append(listener)
            setattr(obj, "_EventListeners__enabled_for_commands", True)  # noqa: B010
            attached += 1
    return attached


def _address(address: Any) -> tuple[str, int | None]:
    if isinstance(address, tuple) and address:
        port = address[1] if len(address) > 1 and isinstance(address[1], int) else None
        return str(address[0]), port
    return str(address), None


def store_info(host: str, port: int | None, database: str) -> EngineInfo:
    """The :class:`EngineInfo` of ``database`` on the server at ``host:port``."""
    key = (host, port, database)
    info = _stores.get(key)
    if info is None:
        info = _stores[key] = registry.register_store(
            ("mongodb", *key),
            url=store_url(host, port, database),
            backend="mongodb",
            driver="pymongo",
            database=database,
            host=host,
            port=port,
        )
    return info


def store_url(host: str, port: int | None, database: str) -> str:
    """``mongodb://host:port/database`` (IPv6 hosts bracketed, socket paths escaped)."""
    if host.endswith(".sock") or "/" in host:  # a UNIX domain socket
        netloc = quote(host, safe="")
    elif ":" in host:
        netloc = f"[{host}]"
    else:
        netloc = host
    if port is not None:
        netloc += f":{port}"
    return redact_url(f"mongodb://{netloc}/{quote(database, safe='')}")


# --- which store does a dependency's value use? ----------------------------------


def extractor(kind: type) -> Callable[[Any], Any] | None:
    """How to get the :class:`EngineInfo` behind a value of type ``kind``
    (a client, database or collection of pymongo, its async API or motor)."""
    if kind.__module__.startswith("motor."):
        return _motor_info
    pymongo = sys.modules.get("pymongo")
    if pymongo is None:
        return None
    for name, function in (
        ("MongoClient", _client_info),
        ("AsyncMongoClient", _client_info),
        ("database.Database", _database_info),
        ("asynchronous.database.AsyncDatabase", _database_info),
        ("collection.Collection", _collection_info),
        ("asynchronous.collection.AsyncCollection", _collection_info),
    ):
        module, _, attribute = f"pymongo.{name}".rpartition(".")
        base = getattr(sys.modules.get(module), attribute, None)
        if isinstance(base, type) and issubclass(kind, base):
            return function
    return None


def _motor_info(value: Any) -> EngineInfo | None:
    delegate = getattr(value, "delegate", None)  # motor wraps the pymongo object
    if delegate is None:
        return None
    from depstrace.sqlalchemy import engine_of

    info = engine_of(delegate)
    return info if isinstance(info, EngineInfo) else None


def _collection_info(collection: Any) -> EngineInfo | None:
    return _database_info(collection.database)


def _client_info(client: Any) -> EngineInfo | None:
    try:
        database = client.get_default_database()
    except Exception:  # no database in the URL: the client alone names no database
        return None
    return _database_info(database)


def _database_info(database: Any) -> EngineInfo | None:
    address = _primary_address(database.client)
    if address is None:
        return None
    host, port = _address(address)
    return store_info(host, port, database.name)


def _primary_address(client: Any) -> Any:
    """The address commands go to by default, without waiting for the server:
    the only known server, else a writable one, else the first seed."""
    servers = client.topology_description.server_descriptions()
    if len(servers) == 1:
        return next(iter(servers))
    for address, server in servers.items():
        if server.is_writable:
            return address
    return min(servers, default=None)
