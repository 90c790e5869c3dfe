"""Pure ASGI middleware that opens and closes one record per request.

``__init__`` stores configuration only; per-request state lives in locals and a
wrapped ``send``; exceptions are always re-raised.  With depstrace instrumented,
every ``FastAPI.__call__`` goes through :func:`traced_call`, so users never add
the middleware by hand under pytest; :class:`DepstraceMiddleware` is the same
logic for apps instrumented explicitly or served by something that is not
``FastAPI`` (a Starlette app mounting FastAPI routers).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from depstrace._context import current_request
from depstrace._failopen import report_internal_error
from depstrace._session import active_session
from depstrace.fastapi import app_id, describe_exception

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class DepstraceMiddleware:
    """Record every HTTP request and websocket session that passes through ``app``.

    Add it like any ASGI middleware (``app.add_middleware(DepstraceMiddleware)``)
    when instrumenting outside pytest; under ``DEPSTRACE=1`` every FastAPI app is
    already traced and adding it again is harmless (the outermost record wins).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await traced_call(self.app, self.app, scope, receive, send)


async def traced_call(
    app: Any, call_next: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> None:
    """Run ``call_next`` for one ASGI call to ``app``, recorded."""
    session = active_session()
    if session is None or scope["type"] not in ("http", "websocket"):
        await call_next(scope, receive, send)
        return
    outer = current_request.get()
    if outer is not None:  # a mounted sub-app, or the middleware added twice
        if hasattr(app, "dependency_overrides"):  # ``apps`` lists FastAPI apps only
            outer.apps.append(app_id(app))
            outer.app_objects.append(app)
        await call_next(scope, receive, send)
        return
    try:
        record = session.open_request(scope, app)
    except Exception:
        report_internal_error("middleware (open)")
        await call_next(scope, receive, send)
        return

    async def traced_send(message: Message) -> None:
        try:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                record.status = message["status"]
            elif kind == "http.response.body" and not message.get("more_body", False):
                record.response_done = True
            elif kind == "websocket.accept":
                record.status = 101
            elif kind == "websocket.close" and record.status is None:
                record.status = 403  # closed before accept: Starlette answers 403
        except Exception:
            report_internal_error("middleware (send)")
        await send(message)

    token = current_request.set(record)
    try:
        await call_next(scope, receive, traced_send)
    except BaseException as exc:
        try:
            record.error = describe_exception(exc)
        except Exception:
            report_internal_error("middleware (error)")
        raise
    finally:
        current_request.reset(token)
        try:
            session.close_request(record)
        except Exception:
            report_internal_error("middleware (close)")


def install(patches: PatchRegistry) -> None:
    """Route every FastAPI app's ``__call__`` through :func:`traced_call` (FastAPI is
    importable: :func:`depstrace.fastapi.install` said so)."""
    import fastapi

    original_call = fastapi.FastAPI.__call__

    async def __call__(self: Any, scope: Any, receive: Any, send: Any) -> None:
        await traced_call(self, functools.partial(original_call, self), scope, receive, send)

    __call__.__wrapped__ = original_call  # type: ignore[attr-defined]
    patches.patch(fastapi.FastAPI, "__call__", __call__)
