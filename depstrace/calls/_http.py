"""Outbound HTTP: httpx transports and requests sessions.

httpx sends every request through a transport's ``handle_request`` /
``handle_async_request``.  The network transports (``HTTPTransport``,
``AsyncHTTPTransport``) make real calls; ``MockTransport``, ``ASGITransport``
and ``WSGITransport`` answer in process and are recorded as fakes.

requests sends through ``Session.send``, which picks an adapter by URL prefix.
depstrace reads that choice from ``session.adapters`` (never calling
``get_adapter``, which test libraries patch) and records as a fake a call that
a test library answers: ``requests_mock`` (its adapter, or its patched
``get_adapter``), ``responses`` and anything else that replaced
``HTTPAdapter.send``.  requests-mock's Mocker calls the ``Session.send`` it
saved at import in a module global; that global is rebound to depstrace's
wrapper too, so its calls are seen.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from depstrace._failopen import report_internal_error
from depstrace.calls import DEFAULT_PORTS, CallUse, Target, done, note

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry

_Classes = tuple[Any, Any]  # requests.Session, requests.adapters.HTTPAdapter
# Adapter modules of libraries that answer requests in process.
_TEST_ADAPTER_ROOTS = frozenset({"requests_mock", "responses", "betamax", "vcr"})


# -- httpx ---------------------------------------------------------------------------


def patch_httpx(patches: PatchRegistry) -> None:
    """Patch httpx's network transports and its in-process test transports."""
    import httpx

    sync: list[tuple[Any, str | None]] = [
        (httpx.HTTPTransport, None),
        (httpx.MockTransport, "httpx.MockTransport"),
        (httpx.WSGITransport, "httpx.WSGITransport"),
    ]
    for kind, fake in sync:
        original = vars(kind).get("handle_request")
        if original is not None:
            patches.patch(kind, "handle_request", _sync_handler(original, fake))
    asynchronous: list[tuple[Any, str | None]] = [
        (httpx.AsyncHTTPTransport, None),
        (httpx.MockTransport, "httpx.MockTransport"),
        (httpx.ASGITransport, "httpx.ASGITransport"),
    ]
    for kind, fake in asynchronous:
        original = vars(kind).get("handle_async_request")
        if original is not None:
            patches.patch(kind, "handle_async_request", _async_handler(original, fake))


def _httpx_note(request: Any, fake: str | None) -> CallUse | None:
    try:
        url = request.url
        scheme = url.scheme
        target = Target(
            "http",
            "httpx",
            url.host or None,
            url.port or DEFAULT_PORTS.get(scheme),
            scheme=scheme,
            fake=fake,
        )
        return note(target, str(request.method))
    except Exception:  # the tracer never breaks the call it observes
        report_internal_error("httpx probe")
        return None


def _sync_handler(original: Any, fake: str | None) -> Any:
    @functools.wraps(original)
    def handle_request(self: Any, request: Any) -> Any:
        use = _httpx_note(request, fake)
        try:
            return original(self, request)
        finally:
            done(use)

    return handle_request


def _async_handler(original: Any, fake: str | None) -> Any:
    @functools.wraps(original)
    async def handle_async_request(self: Any, request: Any) -> Any:
        use = _httpx_note(request, fake)
        try:
            return await original(self, request)
        finally:
            done(use)

    return handle_async_request


# -- requests ------------------------------------------------------------------------


def patch_requests(patches: PatchRegistry) -> None:
    """Patch ``requests.Session.send``, remembering the originals it compares against."""
    from requests import adapters, sessions

    original_send = sessions.Session.send
    classes = (sessions.Session, adapters.HTTPAdapter)

    @functools.wraps(original_send)
    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        use = _requests_note(self, request, classes)
        try:
            return original_send(self, request, **kwargs)
        finally:
            done(use)

    patches.patch(sessions.Session, "send", send)
    # requests-mock keeps the original in a module global (requests_mock.mocker.
    # _original_send) and its Mocker calls that: make it call ours instead.
    patches.rebind_everywhere(original_send, send)


def _requests_note(session: Any, request: Any, classes: _Classes) -> CallUse | None:
    try:
        url = str(request.url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port or DEFAULT_PORTS.get(scheme)
        except ValueError:  # a port that is no number: requests will refuse it
            port = None
        target = Target(
            "http",
            "requests",
            parts.hostname,
            port,
            scheme=scheme,
            fake=_requests_fake(session, url, classes),
        )
        return note(target, str(request.method))
    except Exception:
        report_internal_error("requests probe")
        return None


def _requests_fake(session: Any, url: str, classes: _Classes) -> str | None:
    """The test library that will answer ``url`` on ``session``, or None for the network.

    A method counts as replaced when the function now on the class was not
    defined in requests (wrappers that copy ``__module__``, such as
    OpenTelemetry's instrumentation, still call requests' own)."""
    session_class, http_adapter = classes
    # requests_mock.Mocker sets get_adapter on the session (or on Session) per call.
    own = getattr(session, "__dict__", {}).get("get_adapter")
    replaced = _replaced(own, "requests.sessions") if own is not None else None
    replaced = replaced or _replaced(session_class.get_adapter, "requests.sessions")
    if replaced:
        return replaced
    adapter = None
    lowered = url.lower()
    for prefix, candidate in session.adapters.items():  # what get_adapter does, read only
        if lowered.startswith(prefix.lower()):
            adapter = candidate
            break
    if adapter is None:
        return None
    kind = type(adapter)
    root = kind.__module__.partition(".")[0]
    if root in _TEST_ADAPTER_ROOTS:
        return f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(adapter, http_adapter):
        # responses (and mock.patch("requests.adapters.HTTPAdapter.send")) replace it
        return _replaced(http_adapter.send, "requests.adapters")
    return None


def _replaced(function: Any, home: str) -> str | None:
    """The top-level module of ``function`` when it is not requests' own (in ``home``)."""
    module = getattr(function, "__module__", None)
    if module == home:
        return None
    return module.partition(".")[0] if isinstance(module, str) and module else "unknown"
