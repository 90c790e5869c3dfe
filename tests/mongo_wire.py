"""A minimal MongoDB server speaking the real wire protocol, for tests without mongod.

No MongoDB server can run on the test machines, and mocking pymongo would test
nothing: this module serves real sockets on 127.0.0.1 with real OP_MSG and
OP_QUERY/OP_REPLY frames whose BSON is encoded by pymongo's own ``bson``, so a
stock ``MongoClient`` / ``AsyncMongoClient`` (``directConnection=True``) goes
through its whole network stack.  It knows a handful of commands over an
in-memory ``{database: {collection: [documents]}}``: ``hello``/``isMaster``,
``ping``, ``buildInfo``, ``endSessions``, ``commitTransaction``,
``abortTransaction``, ``find`` (top-level equality filters,
``limit``), ``insert``, ``count`` and ``aggregate`` (``$match``, ``$skip``,
``$limit``, and the ``$group`` that ``count_documents`` sends).  Every command
it receives is logged as ``(database, command)`` so tests can check, from the
server side, which database a request really reached.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import socketserver
import struct
import threading
from typing import Any

import bson
from bson.int64 import Int64

OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013
_HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
_MORE_TO_COME = 1 << 1
_CHECKSUM_PRESENT = 1 << 0

Documents = dict[str, dict[str, list[dict[str, Any]]]]


class MongoWireServer:
    """A threaded wire-protocol server on ``127.0.0.1:<free port>``.

    Use it as a context manager; ``data`` is the in-memory store (seed it
    freely), ``commands`` the ``(database, command name)`` log.
    """

    def __init__(self, data: Documents | None = None) -> None:
        self.data: Documents = data if data is not None else {}
        self.commands: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._connections = 0
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="mongo-wire", daemon=True
        )

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self._server.server_address[1])

    def url(self, database: str | None = None) -> str:
        """A ``mongodb://`` URL for this server (optionally naming ``database``)."""
        return f"mongodb://127.0.0.1:{self.port}/{database or ''}"

    def user_commands(self) -> list[tuple[str, str]]:
        """The command log without handshakes, pings and session bookkeeping."""
        hidden = {"hello", "ismaster", "ping", "endsessions", "buildinfo"}
        with self._lock:
            return [(db, name) for db, name in self.commands if name.lower() not in hidden]

    def __enter__(self) -> MongoWireServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and close every client connection."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._thread.join(timeout=10)

    # -- called by the handler threads -------------------------------------------

    def _track(self, sock: socket.socket, *, add: bool) -> int:
        with self._lock:
            if add:
                self._sockets.add(sock)
                self._connections += 1
            else:
                self._sockets.discard(sock)
            return self._connections

    def run_command(
        self, database: str, command: dict[str, Any], connection: int
    ) -> dict[str, Any]:
        """Answer one command document, as mongod would (roughly)."""
        name = next(iter(command))
        with self._lock:
            self.commands.append((database, name))
        handler = _COMMANDS.get(name.lower())
        if handler is None:
            return {
                "ok": 0.0,
                "errmsg": f"no such command: '{name}'",
                "code": 59,
                "codeName": "CommandNotFound",
            }
        with self._lock:
            return handler(self, database, command, connection)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: MongoWireServer


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        sock: socket.socket = self.request
        connection = owner._track(sock, add=True)
        try:
            while True:
                header = _recv_exactly(sock, _HEADER.size)
                if header is None:
                    return
                length, request_id, _, opcode = _HEADER.unpack(header)
                body = _recv_exactly(sock, length - _HEADER.size)
                if body is None:
                    return
                reply = _answer(owner, opcode, body, request_id, connection)
                if reply is not None:
                    sock.sendall(reply)
        except OSError:  # the client went away, or close() shut the socket
            return
        finally:
            owner._track(sock, add=False)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _cstring(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\x00", offset)
    return data[offset:end].decode(), end + 1


def _answer(
    owner: MongoWireServer, opcode: int, body: bytes, request_id: int, connection: int
) -> bytes | None:
    if opcode == OP_MSG:
        flags, command = _parse_op_msg(body)
        database = command.pop("$db", "admin")
        reply = owner.run_command(database, command, connection)
        if flags & _MORE_TO_COME:  # unacknowledged write: no reply at all
            return None
        payload = struct.pack("<I", 0) + b"\x00" + bson.encode(reply)
        return _frame(payload, request_id, OP_MSG)
    if opcode == OP_QUERY:  # legacy handshake: "admin.$cmd" with the command as query
        _flags = struct.unpack_from("<i", body)[0]
        namespace, offset = _cstring(body, 4)
        offset += 8  # numberToSkip, numberToReturn
        (size,) = struct.unpack_from("<i", body, offset)
        command = bson.decode(body[offset : offset + size])
        if "$query" in command:
            command = command["$query"]
        reply = owner.run_command(namespace.split(".", 1)[0], command, connection)
        payload = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(reply)
        return _frame(payload, request_id, OP_REPLY)
    raise OSError(f"unsupported opcode {opcode}")  # ends the connection, as mongod would


def _parse_op_msg(body: bytes) -> tuple[int, dict[str, Any]]:
    (flags,) = struct.unpack_from("<I", body)
    end = len(body) - (4 if flags & _CHECKSUM_PRESENT else 0)
    offset = 4
    command: dict[str, Any] = {}
    sequences: dict[str, list[dict[str, Any]]] = {}
    while offset < end:
        kind = body[offset]
        offset += 1
        (size,) = struct.unpack_from("<i", body, offset)
        if kind == 0:
            command = bson.decode(body[offset : offset + size])
        else:  # kind 1: a document sequence ("documents" of an insert, ...)
            identifier, start = _cstring(body, offset + 4)
            sequences[identifier] = bson.decode_all(body[start : offset + size])
        offset += size
    command.update(sequences)
    return flags, command


def _frame(payload: bytes, response_to: int, opcode: int) -> bytes:
    return _HEADER.pack(_HEADER.size + len(payload), 0, response_to, opcode) + payload


# --- commands ----------------------------------------------------------------------


def _hello(owner: MongoWireServer, db: str, cmd: dict[str, Any], conn: int) -> dict[str, Any]:
    return {
        "helloOk": True,
        "ismaster": True,
        "isWritablePrimary": True,
        "maxBsonObjectSize": 16 * 1024 * 1024,
        "maxMessageSizeBytes": 48_000_000,
        "maxWriteBatchSize": 100_000,
        "localTime": datetime.datetime.now(tz=datetime.timezone.utc),
        "logicalSessionTimeoutMinutes": 30,
        "connectionId": conn,
        "minWireVersion": 0,
        "maxWireVersion": 21,  # MongoDB 7.0
        "readOnly": False,
        "ok": 1.0,
    }


def _ok(owner: MongoWireServer, db: str, cmd: dict[str, Any], conn: int) -> dict[str, Any]:
    return {"ok": 1.0}


def _build_info(owner: MongoWireServer, db: str, cmd: dict[str, Any], conn: int) -> dict[str, Any]:
    return {"version": "7.0.0", "versionArray": [7, 0, 0, 0], "ok": 1.0}


def _matches(document: dict[str, Any], query: dict[str, Any]) -> bool:
    return all(document.get(key) == value for key, value in query.items())


def _collection(owner: MongoWireServer, db: str, name: str) -> list[dict[str, Any]]:
    return owner.data.setdefault(db, {}).setdefault(name, [])


def _cursor(db: str, name: str, batch: list[dict[str, Any]]) -> dict[str, Any]:
    return {"cursor": {"id": Int64(0), "ns": f"{db}.{name}", "firstBatch": batch}, "ok": 1.0}


def _find(owner: MongoWireServer, db: str, cmd: dict[str, Any], conn: int) -> dict[str, Any]:
    name = cmd["find"]
    found = [d for d in _collection(owner, db, name) if _matches(d, cmd.get("filter") or {})]
    limit = abs(int(cmd.get("limit") or 0))
    return _cursor(db, name, found[:limit] if limit else found)


def _insert(owner: MongoWireServer, db: str, cmd: dict[str, Any], conn: int) -> dict[str, Any]:
    documents = cmd.get("documents", [])
    _collection(owner, db, cmd["insert"]).extend(documents)
    return {"n": len(documents), "ok": 1.0}


def _count(owner: MongoWireServer, db: str, cmd: dict[str, Any], conn: int) -> dict[str, Any]:
    documents = _collection(owner, db, cmd["count"])
    return {"n": sum(_matches(d, cmd.get("query") or {}) for d in documents), "ok": 1.0}


def _aggregate(owner: MongoWireServer, db: str, cmd: dict[str, Any], conn: int) -> dict[str, Any]:
    name = cmd["aggregate"]
    documents = list(_collection(owner, db, name))
    for stage in cmd.get("pipeline", []):
        (operator, argument), *_ = stage.items()
        if operator == "$match":
            documents = [d for d in documents if _matches(d, argument)]
        elif operator == "$skip":
            documents = documents[argument:]
        elif operator == "$limit":
            documents = documents[:argument]
        elif operator == "$group":  # only {"_id": <constant>, "<field>": {"$sum": 1}}
            fields = {key: len(documents) for key in argument if key != "_id"}
            documents = [{"_id": argument["_id"], **fields}] if documents else []
        else:
            return {"ok": 0.0, "errmsg": f"unsupported stage {operator}", "code": 40324}
    return _cursor(db, name, documents)


_COMMANDS = {
    "hello": _hello,
    "ismaster": _hello,
    "ping": _ok,
    "endsessions": _ok,
    "committransaction": _ok,  # sent to the admin database
    "aborttransaction": _ok,
    "buildinfo": _build_info,
    "find": _find,
    "insert": _insert,
    "count": _count,
    "aggregate": _aggregate,
}
