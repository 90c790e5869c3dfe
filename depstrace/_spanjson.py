"""Span ids and console lines for depstrace's private tracer provider, out of tests' reach.

The OpenTelemetry SDK's defaults call through standard-library attributes that
tests patch or depend on: ``RandomIdGenerator`` draws from the global ``random``
state (a test that seeds ``random`` would see a different sequence once
depstrace makes a span), and ``ConsoleSpanExporter`` formats with ``json.dumps``
(a test counting its calls would count depstrace's).  depstrace's own provider
uses these two instead; everything they call is bound at import.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from random import Random
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

_random = Random()  # private state, seeded from os.urandom now
_getrandbits = _random.getrandbits
if hasattr(os, "register_at_fork"):  # a forked worker must not repeat its parent's ids
    os.register_at_fork(after_in_child=_random.seed)

_encode = json.JSONEncoder(indent=4, default=str).encode  # as ReadableSpan.to_json() prints
_fromtimestamp = datetime.fromtimestamp


class PrivateIdGenerator(RandomIdGenerator):
    """Random span and trace ids from depstrace's own ``random.Random``."""

    def generate_span_id(self) -> int:
        """A random non-zero 64-bit span id."""
        span_id = _getrandbits(64)
        while span_id == trace.INVALID_SPAN_ID:
            span_id = _getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        """A random non-zero 128-bit trace id."""
        trace_id = _getrandbits(128)
        while trace_id == trace.INVALID_TRACE_ID:
            trace_id = _getrandbits(128)
        return trace_id


def _iso(nanoseconds: int | None) -> str | None:
    if not nanoseconds:
        return None
    moment = _fromtimestamp(nanoseconds / 1e9, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _attributes(attributes: Any) -> dict[str, Any] | None:
    return None if attributes is None else dict(attributes)


def _context(context: Any) -> dict[str, str]:
    return {
        "trace_id": f"0x{context.trace_id:032x}",
        "span_id": f"0x{context.span_id:016x}",
        "trace_state": repr(context.trace_state),
    }


def _event(event: Any) -> dict[str, Any]:
    return {
        "name": event.name,
        "timestamp": _iso(event.timestamp),
        "attributes": _attributes(event.attributes),
    }


def console_line(span: ReadableSpan) -> str:
    """The span as ``ConsoleSpanExporter`` prints it (``span.to_json()`` and a newline)."""
    status: dict[str, Any] = {"status_code": span.status.status_code.name}
    if span.status.description:
        status["description"] = span.status.description
    document = {
        "name": span.name,
        "context": None if span.context is None else _context(span.context),
        "kind": str(span.kind),
        "parent_id": None if span.parent is None else f"0x{span.parent.span_id:016x}",
        "start_time": _iso(span.start_time),
        "end_time": _iso(span.end_time),
        "status": status,
        "attributes": _attributes(span.attributes),
        "events": [
            {
                "name": ev.name,
                "timestamp": _iso(ev.timestamp),
                "attributes": _attributes(ev.attributes),
            }
            for ev in span.events
        ],
        "links": [
            {"context": _context(link.context), "attributes": _attributes(link.attributes)}
            for link in span.links
        ],
        "resource": {
            "attributes": dict(span.resource.attributes),
            "schema_url": span.resource.schema_url,
        },
    }
    return _encode(document) + os.linesep
