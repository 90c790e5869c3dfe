"""The other things a request reaches: outbound HTTP, AWS, Redis and in-process fakes.

A *call* is one HTTP request sent by httpx or requests, one botocore API call
(boto3), one Redis command (redis-py, sync and asyncio) or one operation on a
mongomock collection.  Each is counted on the running request, grouped by
:class:`Target` (where it went and through what), or, outside any request, on
the running test, phase and fixture, exactly like statements outside requests.
docs/calls.md says what is recorded and why.

A call is recorded *before* it is sent, so a call that fails to connect is
still there.  Nothing secret is read: no path, query string, header, body or
command argument; host names come from parsed URLs, which hold no userinfo.

Whether a target is allowed is decided once per target by an
:class:`AllowList`: in-process fakes and loopback hosts always are, other
hosts only when ``DEPSTRACE_ALLOW_HOSTS`` matches them.  A call that is not
allowed makes an ``EXTERNAL_CALL`` finding (depstrace.findings).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from ipaddress import ip_address
from time import perf_counter
from typing import TYPE_CHECKING, Any

from opentelemetry.context import get_value as _context_value

from depstrace._context import current_request, test_phase
from depstrace._records import SCHEMA

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry

__all__ = ["AllowList", "CallUse", "OutsideCalls", "Target", "done", "hooks", "note"]

ALLOW_HOSTS_VAR = "DEPSTRACE_ALLOW_HOSTS"
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# Stores: a call to one of these counts as reaching a store (docs/calls.md).
STORE_SYSTEMS = frozenset({"redis", "aws", "mongodb"})


@dataclass(frozen=True)
class Target:
    """Where a call went and through what; one ``calls[]`` entry per target."""

    system: str  # "http", "redis", "aws", "mongodb"
    library: str  # "httpx", "requests", "redis", "botocore", "mongomock"
    host: str | None
    port: int | None
    scheme: str | None = None  # http only
    database: str | int | None = None  # Redis db number, mongomock database name
    service: str | None = None  # AWS service name ("s3")
    bucket: str | None = None  # S3 bucket
    fake: str | None = None  # the in-process fake or test transport that answered

    def describe(self) -> str:
        """``https://api.example.com:443``, ``redis://127.0.0.1:6379/0``, ``AWS s3 ...``."""
        where = self.host or ""
        if self.port is not None and self.host:
            where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{where}:{self.port}"
        if self.system == "http":
            said = f"{self.scheme}://{where}" if where else "HTTP"
        elif self.system in ("redis", "mongodb"):
            # No host: in process (a fake) or a UNIX domain socket.
            said = (
                f"{self.system}://{where}/{self.database}"
                if where
                else (f"{self.system} database {self.database}")
            )
        else:
            said = f"AWS {self.service}" + (f" at {where}" if where else "")
            if self.bucket:
                said += f" (bucket {self.bucket})"
        return f"{said} (fake: {self.fake})" if self.fake else said


@dataclass(eq=False)
class CallUse:
    """The calls one request (or one test phase outside requests) made to one target."""

    target: Target
    allowed: bool
    count: int = 0
    operations: dict[str, int] = field(default_factory=dict)
    started: float | None = None  # perf_counter of the first call
    ended: float | None = None  # of the last call's return

    def add(self, operation: str) -> None:
        """Count one call of ``operation`` (an HTTP method, a command, an API operation)."""
        self.count += 1
        self.operations[operation] = self.operations.get(operation, 0) + 1
        if self.started is None:
            self.started = perf_counter()

    def to_dict(self) -> dict[str, Any]:
        """The ``calls[]`` entry (docs/format.md)."""
        t = self.target
        return {
            "system": t.system,
            "library": t.library,
            "scheme": t.scheme,
            "host": t.host,
            "port": t.port,
            "database": t.database,
            "service": t.service,
            "bucket": t.bucket,
            "fake": t.fake,
            "allowed": self.allowed,
            "count": self.count,
            "operations": dict(self.operations),
            "target": t.describe(),
        }


class AllowList:
    """Which hosts tests may call: fakes, loopback, and ``DEPSTRACE_ALLOW_HOSTS``.

    Each pattern is an fnmatch glob, matched case-insensitively against the host
    and against ``host:port`` (``*.internal``, ``minio:9000``, ``redis``).
    """

    def __init__(self, patterns: tuple[str, ...] = ()) -> None:
        self.patterns = tuple(p.strip().lower() for p in patterns if p.strip())
        self._judged: dict[Target, bool] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> AllowList:
        """The allow-list ``DEPSTRACE_ALLOW_HOSTS`` (comma-separated) asks for."""
        return cls(tuple(environ.get(ALLOW_HOSTS_VAR, "").split(",")))

    def allows(self, target: Target) -> bool:
        """Whether a call to ``target`` is fine in a test (judged once per target)."""
        judged = self._judged.get(target)
        if judged is None:
            judged = self._judged[target] = self._judge(target)
        return judged

    def _judge(self, target: Target) -> bool:
        if target.fake is not None or not target.host:  # in process, or a UNIX socket
            return True
        host = target.host.lower().rstrip(".")
        if is_loopback(host):
            return True
        names = [host] if target.port is None else [host, f"{host}:{target.port}"]
        return any(fnmatchcase(name, pattern) for pattern in self.patterns for name in names)

    def describe(self) -> str:
        """The allow-list in words, for messages."""
        extra = f", and {', '.join(self.patterns)}" if self.patterns else ""
        return f"fakes, test transports, loopback hosts{extra}"


def is_loopback(host: str) -> bool:
    """``localhost``, ``*.localhost``, ``127.0.0.0/8``, ``::1``, ``0.0.0.0`` and ``::``."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


# -- the hot path ---------------------------------------------------------------------

_allow = AllowList()
_outside: OutsideCalls | None = None
# True while depstrace itself sends (its OTLP exporter): those calls are not the app's.
own_calls: ContextVar[bool] = ContextVar("depstrace_own_calls", default=False)
try:  # what OpenTelemetry's span processors set while an exporter sends (any exporter's)
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as _SUPPRESSED
except ImportError:  # opentelemetry-api before the key had this name
    _SUPPRESSED = "suppress_instrumentation"


def note(target: Target, operation: str) -> CallUse | None:
    """Count one call on the running request, else on the test phase outside requests.

    Returns the :class:`CallUse` so the probe can mark when the call returned.
    """
    if own_calls.get() or _context_value(_SUPPRESSED):
        # Telemetry, not the code under test: an OpenTelemetry exporter sending spans
        # (the SDK's processors suppress instrumentation around export, and every
        # OpenTelemetry instrumentation honours it), or depstrace's own.
        return None
    record = current_request.get()
    if record is not None:
        use = record.outbound.get(target)
        if use is None:  # setdefault: threads of one request (sync dependencies) may race
            use = record.outbound.setdefault(target, CallUse(target, _allow.allows(target)))
    elif _outside is not None:
        use = _outside.use(target, _allow.allows(target))
    else:
        return None
    use.add(operation)
    return use


def done(use: CallUse | None) -> None:
    """The call ``note`` counted has returned (or raised)."""
    if use is not None:
        use.ended = perf_counter()


# -- calls outside any request ------------------------------------------------------

OutsideKey = tuple[Target, str | None, str, str | None, str | None]


class OutsideCalls:
    """Calls made outside any request, by target, test, phase and fixture."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uses: dict[OutsideKey, CallUse] = {}
        self._fixtures: dict[tuple[str | None, str | None], dict[str, Any] | None] = {}

    def use(self, target: Target, allowed: bool) -> CallUse:
        """The :class:`CallUse` of ``target`` in the running test phase and fixture."""
        running = test_phase()
        fixture = running.fixture
        named = (fixture["name"], fixture["site"]) if fixture is not None else (None, None)
        key = (target, running.nodeid, running.phase, *named)
        use = self._uses.get(key)
        if use is None:
            with self._lock:
                use = self._uses.setdefault(key, CallUse(target, allowed))
                self._fixtures[named] = fixture
        return use

    def drain(self) -> list[dict[str, Any]]:
        """One ``outside_calls`` record per (test, phase, fixture) counted so far."""
        with self._lock:
            pending, self._uses = self._uses, {}
        grouped: dict[tuple[str | None, str, str | None, str | None], list[CallUse]] = {}
        for (_, test, phase, *named), use in pending.items():
            grouped.setdefault((test, phase, named[0], named[1]), []).append(use)
        return [
            {
                "type": "outside_calls",
                "schema": SCHEMA,
                "test": test,
                "phase": phase,
                "fixture": self._fixtures.get((name, site)),
                "calls": [use.to_dict() for use in uses],
            }
            for (test, phase, name, site), uses in grouped.items()
        ]


# -- switching on and off --------------------------------------------------------------


def start(outside: OutsideCalls, allow: AllowList) -> None:
    """Count calls from now on (the probes are installed by :func:`hooks`)."""
    global _outside, _allow
    _outside, _allow = outside, allow


def stop() -> None:
    """Count nothing more (the probes' patches are undone by the registry)."""
    global _outside, _allow
    _outside, _allow = None, AllowList()


Hook = tuple[str, Callable[[], None], Callable[[], None] | None]


def hooks(patches: PatchRegistry) -> list[Hook]:
    """``(module, instrument now, instrument on import)`` for depstrace.stores' watcher.

    Each library is patched only when importable, and only once imported.
    """
    import functools

    from depstrace.calls import _aws, _fakes, _http, _redis

    return [
        ("httpx", functools.partial(_http.patch_httpx, patches), None),
        ("requests", functools.partial(_http.patch_requests, patches), None),
        ("redis", functools.partial(_redis.patch_sync, patches), None),
        ("redis.asyncio", functools.partial(_redis.patch_asyncio, patches), None),
        ("botocore.client", functools.partial(_aws.patch_botocore, patches), None),
        ("mongomock", functools.partial(_fakes.patch_mongomock, patches), None),
    ]
