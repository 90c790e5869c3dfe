"""Redis commands through redis-py, sync (``redis.Redis``) and asyncio (``redis.asyncio.Redis``).

Every command a client sends goes through ``Redis.execute_command`` (its first
argument is the command name: only that is read, never an argument); a
pipeline queues commands and sends them in ``Pipeline.execute``, where each
queued command is counted.  Host, port and database number come from the
client's connection pool; fakeredis clients are ``redis.Redis`` subclasses whose
pool makes fakeredis connections, recorded as the fake ``fakeredis``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from depstrace._failopen import report_internal_error
from depstrace.calls import CallUse, Target, done, note

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry


def patch_sync(patches: PatchRegistry) -> None:
    """Patch ``redis.client.Redis.execute_command`` and ``Pipeline.execute``."""
    from redis import client

    original: Any = client.Redis.execute_command

    @functools.wraps(original)
    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        use = _note(self, args[:1])
        try:
            return original(self, *args, **options)
        finally:
            done(use)

    patches.patch(client.Redis, "execute_command", execute_command)
    original_execute: Any = client.Pipeline.execute

    @functools.wraps(original_execute)
    def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        use = _note(self, _queued(self))
        try:
            return original_execute(self, *args, **kwargs)
        finally:
            done(use)

    patches.patch(client.Pipeline, "execute", execute)


def patch_asyncio(patches: PatchRegistry) -> None:
    """Patch ``redis.asyncio.client.Redis.execute_command`` and ``Pipeline.execute``."""
    from redis.asyncio import client

    original: Any = client.Redis.execute_command

    @functools.wraps(original)
    async def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        use = _note(self, args[:1])
        try:
            return await original(self, *args, **options)
        finally:
            done(use)

    patches.patch(client.Redis, "execute_command", execute_command)
    original_execute: Any = client.Pipeline.execute

    @functools.wraps(original_execute)
    async def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        use = _note(self, _queued(self))
        try:
            return await original_execute(self, *args, **kwargs)
        finally:
            done(use)

    patches.patch(client.Pipeline, "execute", execute)


def _queued(pipeline: Any) -> list[Any]:
    """The command names a pipeline is about to send."""
    try:
        return [args[0] for args, _ in pipeline.command_stack if args]
    except Exception:
        return []


def _note(client: Any, names: Any) -> CallUse | None:
    try:
        if not names:
            return None
        target = _target(client)
        use = None
        for name in names:
            operation = name.decode("latin-1") if isinstance(name, bytes) else str(name)
            use = note(target, operation.upper())
        return use
    except Exception:  # the tracer never breaks the command it observes
        report_internal_error("redis probe")
        return None


def _target(client: Any) -> Target:
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    connection_class = getattr(pool, "connection_class", None)
    module = getattr(connection_class, "__module__", "") or ""
    database = kwargs.get("db", 0)
    if module.partition(".")[0] == "fakeredis":  # in process: its "host" is a random name
        return Target("redis", "redis", None, None, database=database, fake="fakeredis")
    path = kwargs.get("path")
    if path:  # a UNIX domain socket
        return Target("redis", "redis", None, None, database=database)
    return Target(
        "redis",
        "redis",
        kwargs.get("host", "localhost"),
        kwargs.get("port", 6379),
        database=database,
    )
