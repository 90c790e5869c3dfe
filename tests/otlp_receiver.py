"""Real OTLP receivers on 127.0.0.1 for the span tests, and helpers to read what arrived.

:class:`HttpReceiver` is an ``http.server`` that accepts ``POST /v1/traces`` with a
protobuf ``ExportTraceServiceRequest`` (gzip or plain), as Jaeger's collector and
the OpenTelemetry Collector do on port 4318; :class:`GrpcReceiver` serves the
``TraceService/Export`` RPC with ``grpc.server``, as they do on 4317.  Both keep
every raw request body, the headers or metadata, and the decoded spans.

:class:`SilentReceiver` accepts TCP connections and never answers;
:class:`RefusingPort` is a port whose connections are refused.  Together they
are the two ways a collector is "down".
"""

from __future__ import annotations

import gzip
import socket
import threading
import zlib
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass
class Span:
    """One received span, decoded into plain Python values."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str | None
    start: int
    end: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: tuple[str, str]
    service: str | None
    scope: str
    children: list[Span] = field(default_factory=list)


def value(any_value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as a Python value (arrays as lists)."""
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if which == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    return getattr(any_value, which)


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP ``KeyValue`` list -> dict."""
    return {kv.key: value(kv.value) for kv in pairs}


def decode(request: trace_service_pb2.ExportTraceServiceRequest) -> list[Span]:
    """Every span of one export request."""
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        name=span.name,
                        kind=KINDS[span.kind],
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        start=span.start_time_unix_nano,
                        end=span.end_time_unix_nano,
                        attributes=attributes(span.attributes),
                        events=[(e.name, attributes(e.attributes)) for e in span.events],
                        status=(STATUS[span.status.code], span.status.message),
                        service=resource.get("service.name"),
                        scope=scope_spans.scope.name,
                    )
                )
    return spans


def tree(spans: list[Span]) -> list[Span]:
    """Link spans to their parents; return the roots (spans whose parent did not arrive).

    Siblings are ordered by start time, then name.
    """
    ordered = sorted(spans, key=lambda s: (s.start, s.name))
    by_id = {s.span_id: s for s in ordered}
    roots = []
    for span in ordered:
        span.children = []
    for span in ordered:
        parent = by_id.get(span.parent_id) if span.parent_id else None
        if parent is None:
            roots.append(span)
        else:
            parent.children.append(span)
    return roots


def outline(span: Span) -> Any:
    """``(name, kind, [children...])``: the shape of a tree, for one assertion."""
    return (span.name, span.kind, [outline(c) for c in span.children])


def walk(span: Span) -> Iterator[Span]:
    """``span`` and every descendant, depth first."""
    yield span
    for child in span.children:
        yield from walk(child)


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def add(self, body: bytes, headers: dict[str, str]) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            self.bodies.append(body)
            self.headers.append(headers)
            self.requests.append(request)

    @property
    def spans(self) -> list[Span]:
        """Every span received so far."""
        with self.lock:
            requests = list(self.requests)
        return [s for r in requests for s in decode(r)]


class HttpReceiver(_Store):
    """OTLP/HTTP (protobuf) on ``http://127.0.0.1:<port>/v1/traces``.

    With ``status`` other than 200 it answers every export with that status
    and keeps nothing (a collector that is overloaded or misconfigured).
    """

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        store = self
        self.refused = 0  # exports answered with ``status``

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                if status != 200:
                    store.refused += 1
                    self.send_error(status)
                    return
                store.add(body, {k.lower(): v for k, v in self.headers.items()})
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


class GrpcReceiver(_Store):
    """OTLP/gRPC on ``127.0.0.1:<port>`` (insecure, like a local collector)."""

    def __init__(self) -> None:
        super().__init__()
        store = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(
                self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
            ) -> trace_service_pb2.ExportTraceServiceResponse:
                metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
                store.add(request.SerializeToString(), metadata)
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None).wait(5)


class SilentReceiver:
    """Accepts TCP connections and never answers (a hung collector)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.socket.settimeout(0.1)
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)  # held open, never read or answered

    def __enter__(self) -> SilentReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for connection in self.connections:
            connection.close()
        self.socket.close()


class RefusingPort:
    """A bound socket that never listens: connecting to its port is refused."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RefusingPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.socket.close()
