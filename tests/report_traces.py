"""A real trace of a small app, attributed to named tests, for the report formats and
the HTML page (tests/test_report_formats.py, tests/test_html.py).

The requests run through the real tracer (TestClient, SQLite files); each batch is
attributed to a test id the way the pytest plugin does it (``set_test_phase``), so
the trace holds tests without a pytester run.  Its tests:

- ``tests/test_items.py::test_list``: GET /items through an overridden ``get_db``
  (nested below ``get_repo``; a second use is cached) on the test database: clean.
- ``tests/test_stats.py::test_stats``: GET /stats opens the production engine outside
  Depends: WRONG_DB and DI_BYPASS.
- ``tests/test_admin.py::test_report``: GET /admin through ``get_admin_db``, never
  overridden, on the production database: WRONG_DB.
- :data:`HOSTILE`: a test id and a path holding markup, reaching the production
  database outside Depends as /stats does (WRONG_DB, DI_BYPASS).
- :data:`WEATHER`: GET /weather calls a local ``http.server`` on 127.0.0.1 (allowed)
  and ``api.weather.invalid`` (never resolves; not allowed: EXTERNAL_CALL); the test
  body calls the local server too, outside any request (an ``outside_calls`` record).
- :data:`WARM` builds an engine on a test database that :data:`LATE`'s GET /late
  uses: an order effect, no finding.
- :data:`PURGE`: GET /purge deletes on the production database, which the guard
  (``writes``) refuses: a ``guard`` record, status 500, WRONG_DB.  /stats writes there
  inside ``depstrace.allow_db('*prod.db')``: a ``guard`` record of an allowed use.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the
# functions defined inside make_trace at runtime, where closure names do not resolve.

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import httpx
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import depstrace
from depstrace._context import restore_test_phase, set_test_phase

HOSTILE = "tests/test_<script>alert(1)</script>.py::test_x[</script><img src=x onerror=alert(2)>]"
HOSTILE_PATH = "/echo/<script>alert(3)</script>"
EXTERNAL = "http://api.weather.invalid:8081/v1/today?token=s3cret"  # RFC 2606: never resolves
STATS = "tests/test_stats.py::test_stats"
WEATHER = "tests/test_weather.py::test_weather"
WARM = "tests/test_warm.py::test_warm"
LATE = "tests/test_late.py::test_late"
PURGE = "tests/test_purge.py::test_purge"
OFFENDING_EVERY = 20  # grow(): one request in 20 reached the production database
TESTS = {
    "tests/test_items.py::test_list": ["/items", "/items"],
    STATS: ["/stats"],
    "tests/test_admin.py::test_report": ["/admin"],
    HOSTILE: [HOSTILE_PATH],
    WEATHER: ["/weather"],
    WARM: [],
    LATE: ["/late"],
    PURGE: ["/purge"],
}
STATUS = {"/purge": 500}  # the guard refused its DELETE; every other request answers 200


class _Local(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def make_trace(trace: Path, data: Path, prod_dir: Path) -> Path:
    """Serve :data:`TESTS` traced into ``trace``; test.db lives in ``data`` (a pytest
    temporary directory), prod.db in ``prod_dir`` (outside them)."""
    prod = sa.create_engine(f"sqlite:///{prod_dir / 'prod.db'}")
    test = sa.create_engine(f"sqlite:///{data / 'test_app.db'}")

    def get_db() -> Iterator[Session]:
        with Session(prod) as session:
            yield session

    def get_test_db() -> Iterator[Session]:
        with Session(test) as session:
            yield session

    def get_admin_db() -> Iterator[Session]:
        with Session(prod) as session:
            yield session

    class Repo:
        def __init__(self, db: Annotated[Session, Depends(get_db)]) -> None:
            self.db = db

    app = FastAPI(title="report")

    @app.get("/items")
    def items(repo: Annotated[Repo, Depends()], db: Annotated[Session, Depends(get_db)]) -> int:
        return len(repo.db.execute(sa.text("SELECT 1")).all()) + 0 * id(db)

    @app.get("/stats")
    def stats() -> int:
        with Session(prod) as session:
            session.execute(sa.text("CREATE TABLE IF NOT EXISTS hits (n INTEGER)"))
            session.execute(sa.text("INSERT INTO hits VALUES (1)"))
            session.commit()
            return len(session.execute(sa.text("SELECT 1")).all())

    @app.get("/admin")
    def admin(db: Annotated[Session, Depends(get_admin_db)]) -> int:
        return len(db.execute(sa.text("SELECT 1")).all())

    @app.get("/weather")
    def weather() -> int:
        assert httpx.get(f"{local}/today").status_code == 200
        try:
            httpx.get(EXTERNAL, timeout=5)
        except httpx.HTTPError:
            return 0
        return 1

    late: list[sa.Engine] = []

    def get_late_db() -> Iterator[Session]:
        with Session(late[0]) as session:
            yield session

    @app.get("/late")
    def late_items(db: Annotated[Session, Depends(get_late_db)]) -> int:
        return len(db.execute(sa.text("SELECT 1")).all())

    @app.get("/purge")
    def purge(db: Annotated[Session, Depends(get_admin_db)]) -> int:
        db.execute(sa.text("DELETE FROM hits"))
        db.commit()
        return 0

    @app.get("/echo/{text:path}")
    def echo(text: str) -> str:
        with Session(prod) as session:  # outside Depends, like /stats
            session.execute(sa.text("SELECT 1"))
        return text

    app.dependency_overrides[get_db] = get_test_db
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Local)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local = f"http://127.0.0.1:{server.server_address[1]}"
    depstrace.instrument(trace_file=trace, guard="writes")
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            for test_id, paths in TESTS.items():
                previous = set_test_phase(test_id, "call")
                try:
                    if test_id == WEATHER:  # the test body, outside any request
                        assert httpx.get(f"{local}/ready").status_code == 200
                    if test_id == WARM:
                        late.append(sa.create_engine(f"sqlite:///{data / 'test_late.db'}"))
                    with depstrace.allow_db("*prod.db") if test_id == STATS else nullcontext():
                        for path in paths:
                            assert client.get(path).status_code == STATUS.get(path, 200)
                finally:
                    restore_test_phase(previous)
    finally:
        depstrace.uninstrument()
        server.shutdown()
        server.server_close()
        prod.dispose()
        test.dispose()
        for engine in late:
            engine.dispose()
    return trace


def grow(
    base: Path,
    path: Path,
    *,
    size: int = 0,
    requests: int = 0,
    offending_every: int = OFFENDING_EVERY,
) -> int:
    """Write ``path``: ``base``'s records, its requests repeated under new ids and tests
    (5 requests a test, 20 tests a module, one request in ``offending_every`` with
    findings: 1 is every request, the suite's override never applied) until the file
    holds ``size`` bytes or ``requests`` requests; return how many requests it holds."""
    records = [json.loads(line) for line in base.read_text(encoding="utf-8").splitlines()]
    served = [r for r in records if r["type"] == "request"]
    clean = [r for r in served if not r["findings"]]
    offending = [r for r in served if r["findings"]]
    count = 0
    with path.open("w", encoding="utf-8") as file:
        for record in records:
            if record["type"] not in ("request", "summary"):
                file.write(json.dumps(record) + "\n")
        while (size and file.tell() < size) or count < requests:
            if count % offending_every == 0:  # each offending request in turn
                request = offending[count // offending_every % len(offending)]
            else:
                request = clean[count % len(clean)]
            test = f"tests/test_module{count // 100}.py::test_{count // 5 % 20}"
            file.write(json.dumps(request | {"id": f"r{count + 1}", "test": test}) + "\n")
            count += 1
        summary = next(r for r in records if r["type"] == "summary")
        file.write(json.dumps(summary | {"requests": count}) + "\n")
    return count
