"""depstrace is invisible to the tests it observes: it calls nothing a test may patch.

A suite patches every standard-library attribute of :data:`PATCHED` for the
whole session and, while any test is set up, run or torn down (depstrace's
flush after each test included), notes who called each one: depstrace itself
(the innermost frame outside the standard library is in the depstrace package,
so ``os.path.relpath`` calling ``os.getcwd`` for depstrace counts), or the test
and the libraries it uses (counted; pytest's own bookkeeping is left out).  Its
tests make requests and statements through every path depstrace records.  Run
untraced and then traced under several settings: depstrace must call nothing,
and every count must be what the untraced run counted.
"""

from __future__ import annotations

import ast

import pytest

# Standard-library attributes tests patch (mock.patch("json.dumps"), freezers,
# seeded ids, fake environments...).  os.environ is deliberately absent: depstrace
# reads the live environment when an engine is first seen, which is the point of
# ENGINE_FROM_ENV, and mock.patch.dict changes that object in place.
PATCHED = [
    "json.dumps",
    "json.loads",
    "json.dump",
    "json.load",
    "time.time",
    "time.time_ns",
    "datetime.datetime.now",
    "datetime.datetime.utcnow",
    "datetime.datetime.fromtimestamp",
    "datetime.date.today",
    "time.perf_counter",
    "time.perf_counter_ns",
    "time.monotonic",
    "time.monotonic_ns",
    "time.process_time",
    "time.sleep",
    "uuid.uuid1",
    "uuid.uuid4",
    "os.getenv",
    "os.getpid",
    "os.getcwd",
    "os.urandom",
    "os.path.relpath",
    "os.path.abspath",
    "os.path.exists",
    "os.path.basename",
    "builtins.open",
    "random.random",
    "random.randint",
    "random.getrandbits",
    "random.choice",
    "secrets.token_hex",
    "socket.gethostname",
    "platform.python_version",
    "platform.node",
    "threading.get_ident",
    "asyncio.get_running_loop",
    "traceback.format_exc",
    "traceback.extract_stack",
    "inspect.stack",
    "warnings.warn",
    "logging.getLogger",
    "logging.Logger.warning",
    "logging.Logger.error",
    "logging.Logger.handle",
]

APP = """
import asyncio
import os
from typing import Annotated, AsyncIterator, Iterator

import sqlalchemy as sa
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, WebSocket
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

DATA = os.environ["SCENARIO_DATA"]
test_engine = sa.create_engine(f"sqlite:///{DATA}/test_app.db")
prod_engine = sa.create_engine(f"sqlite:///{DATA}/prod.db")
async_engine = create_async_engine(f"sqlite+aiosqlite:///{DATA}/test_app.db")


def get_db() -> Iterator[Session]:
    with Session(prod_engine) as session:  # the tests override it with the test engine
        yield session


async def get_async_db() -> AsyncIterator[AsyncSession]:
    async with AsyncSession(async_engine) as session:
        yield session


def settings() -> dict[str, str]:
    return {"name": "x"}


async def user(cfg: Annotated[dict[str, str], Depends(settings)]) -> str:
    return cfg["name"]


def failing() -> str:
    raise HTTPException(status_code=403, detail="no")


class Pager:
    async def __call__(self, size: int = 3) -> int:
        return size


app = FastAPI(title="workload")
sub = FastAPI(title="sub")
app.mount("/sub", sub)


@app.get("/items")
def items(db: Annotated[Session, Depends(get_db)], who: Annotated[str, Depends(user)]) -> int:
    db.execute(sa.text("INSERT INTO t VALUES (1)"))
    db.commit()
    return len(db.execute(sa.text("SELECT * FROM t")).all())


@app.get("/async")
async def async_items(
    db: Annotated[AsyncSession, Depends(get_async_db)], size: Annotated[int, Depends(Pager())]
) -> int:
    return (await db.execute(sa.text("SELECT :n"), {"n": size})).scalar_one()


@app.get("/bypass")
def bypass(tasks: BackgroundTasks) -> int:
    tasks.add_task(_later)
    with prod_engine.connect() as conn:  # outside Depends: a finding, logged as a warning
        return conn.execute(sa.text("SELECT 1")).scalar_one()


def _later() -> None:
    with prod_engine.connect() as conn:
        conn.execute(sa.text("SELECT 2"))


@app.get("/denied")
def denied(who: Annotated[str, Depends(failing)]) -> str:
    return who


@app.get("/stream")
def stream() -> StreamingResponse:
    return StreamingResponse(iter([b"a", b"b"]))


@app.websocket("/ws")
async def ws(websocket: WebSocket, who: Annotated[str, Depends(user)]) -> None:
    await websocket.accept()
    await websocket.send_text(who)
    await websocket.close()


@sub.get("/ping")
def ping(who: Annotated[str, Depends(user)]) -> Response:
    # Already-encoded JSON: no FastAPI version serializes it (older ones would call
    # json.dumps for a plain return value), so every json.dumps call is depstrace's.
    return Response(content=f'"{who}"', media_type="application/json")
"""

CONFTEST = """
import importlib
import os
import sys
from unittest import mock

import _pytest
import pluggy
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import app as workload

PATCHED = {patched!r}
DEPSTRACE_DIR = os.path.dirname(importlib.util.find_spec("depstrace").origin) + os.sep
# The standard library's own directory (a venv's "platstdlib" would hold site-packages),
# frozen modules and generated code such as dataclass methods.
STDLIB = (os.path.dirname(os.__file__) + os.sep, "<")
# pytest's own bookkeeping (locations, failure reports) is not something a test sees.
PYTEST = tuple(os.path.dirname(m.__file__) + os.sep for m in (_pytest, pluggy))
_patches = []
_testing = False  # a test is being set up, run or torn down
_counts = {{}}  # attribute -> calls by the tests and the libraries they use
_by_depstrace = {{}}  # attribute -> sites in depstrace that called it


def _resolve(dotted):
    # "logging.Logger.warning" -> (logging.Logger, "warning"); "os.path.relpath" -> (os.path, ...)
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise LookupError(dotted)


def _spying(dotted, original):
    # Who called: the innermost frame outside the standard library (mock's own
    # frames included), so os.path.relpath calling os.getcwd for depstrace counts
    # as depstrace's call.
    def call(*args, **kwargs):
        if not _testing:
            return original(*args, **kwargs)
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith(STDLIB):
            frame = frame.f_back
        caller = frame.f_code.co_filename if frame is not None else ""
        if caller.startswith(DEPSTRACE_DIR):
            site = f"{{os.path.basename(caller)}}:{{frame.f_lineno}}"
            _by_depstrace.setdefault(dotted, set()).add(site)
        elif not caller.startswith(PYTEST):
            _counts[dotted] = _counts.get(dotted, 0) + 1
        return original(*args, **kwargs)

    return call


def _start(patcher):
    patcher.start()
    _patches.append(patcher)


def pytest_sessionstart(session):
    stand_ins = {{}}  # built-in class -> the subclass now in its module
    for dotted in PATCHED:
        owner, name = _resolve(dotted)
        spy = _spying(dotted, getattr(owner, name))
        if not isinstance(owner, type):
            _start(mock.patch.object(owner, name, mock.MagicMock(side_effect=spy)))
        elif owner.__flags__ & (1 << 9):  # Py_TPFLAGS_HEAPTYPE: a method can be patched
            _start(mock.patch.object(owner, name, autospec=True, side_effect=spy))
        else:  # datetime.datetime.now: a subclass takes the class's place, as freezers do
            if owner not in stand_ins:
                stand_ins[owner] = type(owner.__name__, (owner,), {{}})
                module = sys.modules[owner.__module__]
                _start(mock.patch.object(module, owner.__name__, stand_ins[owner]))
            setattr(stand_ins[owner], name, classmethod(lambda cls, *a, _s=spy, **k: _s(*a, **k)))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    global _testing
    _testing = True  # from the first fixture of a test...
    yield


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_teardown(item):
    global _testing
    yield
    _testing = False  # ...to the end of its teardown, depstrace's flush included


def pytest_sessionfinish(session):
    counts = {{dotted: _counts.get(dotted, 0) for dotted in PATCHED}}
    for patcher in reversed(_patches):
        patcher.stop()
    by_depstrace = {{k: sorted(v) for k, v in _by_depstrace.items()}}
    with open(os.environ["COUNTS_FILE"], "w") as out:
        out.write(repr((counts, by_depstrace)))


def override_get_db():
    with Session(workload.test_engine) as session:
        yield session


@pytest.fixture
def client():
    workload.app.dependency_overrides[workload.get_db] = override_get_db
    with workload.test_engine.begin() as conn:  # a statement outside any request
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
    with TestClient(workload.app) as client:
        yield client
    workload.app.dependency_overrides.clear()
"""

TESTS = """
import json
import os
from unittest import mock

import sqlalchemy as sa

import app as workload


def test_requests_through_every_path(client):
    assert client.get("/items").status_code == 200
    assert client.get("/async").json() == 3
    assert client.get("/bypass").json() == 1
    assert client.get("/denied").status_code == 403
    assert client.get("/stream").content == b"ab"
    assert client.get("/sub/ping").json() == "x"
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_text() == "x"


def test_statement_outside_requests(client):
    with workload.prod_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 3")).scalar_one() == 3


def test_engine_from_the_environment(client):
    # An engine built inside a test from an exported URL: depstrace looks for
    # the lines that set the variable (ENGINE_FROM_ENV).
    engine = sa.create_engine(os.environ["WORKLOAD_DATABASE_URL"])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 4")).scalar_one() == 4
    engine.dispose()


def test_json_dumps_counts_only_the_app(client):
    # FastAPI's tests/test_dump_json_fast_path.py in miniature: the app's response
    # path of /sub/ping calls no json.dumps, and so must depstrace's.
    with mock.patch("json.dumps", wraps=json.dumps) as dumps:
        assert client.get("/sub/ping").json() == "x"
    assert dumps.call_count == 0


def test_a_failing_test_still_fails(client):
    assert client.get("/denied").status_code == 200
"""


Counts = dict[str, int]
BySite = dict[str, list[str]]

# Their call counts follow event-loop iterations and thread scheduling, so they
# differ from run to run with or without depstrace; for them only "depstrace
# never calls them" is checked.
TIMING_DEPENDENT = {"time.monotonic", "asyncio.get_running_loop", "threading.get_ident"}

SETTINGS = {
    "defaults": {},
    "every-log-event": {"DEPSTRACE_LOG_LEVEL": "debug"},
    "console-spans": {"DEPSTRACE_EXPORTER": "console", "DEPSTRACE_LOG_LEVEL": "debug"},
}


def _run(pytester: pytest.Pytester, name: str, env: dict[str, str]) -> tuple[Counts, BySite]:
    """Run the suite in a subprocess: how often each attribute was called, and from
    which depstrace lines."""
    counts = pytester.path / f"counts-{name}.txt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COUNTS_FILE", str(counts))
        for variable, value in env.items():
            patch.setenv(variable, value)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1)
    parsed: tuple[Counts, BySite] = ast.literal_eval(counts.read_text())
    return parsed


@pytest.fixture
def workload(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The patching suite in a pytester directory, with its SQLite files."""
    data = pytester.path / "data"
    data.mkdir()
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.setenv("WORKLOAD_DATABASE_URL", f"sqlite:///{data / 'prod.db'}")
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB", "DEPSTRACE_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(app=APP, conftest=CONFTEST.format(patched=PATCHED), test_workload=TESTS)
    pytester.makeini(
        "[pytest]\npythonpath = .\nfilterwarnings =\n    ignore::DeprecationWarning\n"
        "    ignore::UserWarning\n"
    )
    return pytester


def test_depstrace_calls_nothing_a_test_may_patch(workload: pytest.Pytester) -> None:
    """Under every setting, no patched attribute is called from depstrace, and each is
    called exactly as often as without depstrace."""
    untraced, none = _run(workload, "untraced", {})
    assert (sorted(untraced), none) == (sorted(PATCHED), {})
    found = {}
    for name, settings in SETTINGS.items():
        counts, by_depstrace = _run(workload, name, {"DEPSTRACE": "1", **settings})
        changed = {
            attribute: (untraced[attribute], counts[attribute])
            for attribute in PATCHED
            if attribute not in TIMING_DEPENDENT and counts[attribute] != untraced[attribute]
        }
        found[name] = (by_depstrace, changed)
    assert found == {name: ({}, {}) for name in SETTINGS}
