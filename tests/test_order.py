"""Order effects end to end: a test that passes alone and fails in the suite because an
earlier test made the engine or the settings it uses; the account and ``depstrace diff``
name that test."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

import depstrace
from depstrace import _failopen, _order, _session
from depstrace._context import restore_test_phase, set_test_phase
from depstrace._session import TraceSession
from depstrace.cli import main

ENGINE_APP = """
import functools, os
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session

@functools.lru_cache
def get_engine():
    default = f"sqlite:///{os.environ['SCENARIO_DATA']}/test.db"
    return sa.create_engine(os.environ.get("DATABASE_URL", default))

def get_db():
    with Session(get_engine()) as session:
        yield session

app = FastAPI(title="shop")

@app.get("/items")
def items(db: Session = Depends(get_db)) -> int:
    return db.execute(sa.text("SELECT count(*) FROM items")).scalar_one()
"""

SETTINGS_APP = """
import functools, os
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from pydantic_settings import BaseSettings
from sqlalchemy.orm import Session

class Settings(BaseSettings):
    database_url: str = f"sqlite:///{os.environ['SCENARIO_DATA']}/test.db"

@functools.lru_cache
def get_settings() -> Settings:
    return Settings()

_engines = {}

def get_db(settings: Settings = Depends(get_settings)):
    url = settings.database_url
    engine = _engines.get(url) or _engines.setdefault(url, sa.create_engine(url))
    with Session(engine) as session:
        yield session

app = FastAPI(title="shop")

@app.get("/items")
def items(db: Session = Depends(get_db)) -> int:
    return db.execute(sa.text("SELECT count(*) FROM items")).scalar_one()
"""

# The same settings read inside the dependency, not injected: the engine's URL is a field
# of the settings object, which is how the earlier test is found.
SETTINGS_INSIDE_APP = SETTINGS_APP.replace(
    "def get_db(settings: Settings = Depends(get_settings)):\n    url = settings.database_url",
    "def get_db():\n    url = get_settings().database_url",
)
assert SETTINGS_INSIDE_APP != SETTINGS_APP

CONFTEST = """
import pytest
from fastapi.testclient import TestClient
from app import app

@pytest.fixture
def client():
    with TestClient(app) as client:
        yield client
"""

LEAKING_TEST = """
import os
from paths import PROD

def test_export(client):
    os.environ["DATABASE_URL"] = PROD  # never put back
    assert client.get("/items").status_code == 200
"""

CACHING_TEST = """
from app import get_settings
from paths import PROD

def test_settings_read_env(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", PROD)
    assert get_settings().database_url == PROD  # cached for good
"""

ITEMS_TEST = """
def test_items_empty(client):
    assert client.get("/items").json() == 0
"""


def _database(path: Path, rows: int) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY)")
        conn.executemany("INSERT INTO items VALUES (?)", [(i,) for i in range(rows)])


@pytest.fixture
def suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> Callable[[str, str], pytest.Pytester]:
    """A suite over two real SQLite files: test.db (empty) and a production file
    outside pytest's temporary directories (3 rows)."""

    def make(app: str, earlier: str) -> pytest.Pytester:
        data = pytester.path / "data"
        data.mkdir()
        _database(data / "test.db", 0)
        _database(prod_dir / "prod.db", 3)
        monkeypatch.setenv("SCENARIO_DATA", str(data))
        monkeypatch.setenv("DEPSTRACE", "1")
        monkeypatch.setenv("COLUMNS", "1000")
        for name in ("DATABASE_URL", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB"):
            monkeypatch.delenv(name, raising=False)
        # Not in an environment variable: ENGINE_FROM_ENV would name it too.
        paths = f"PROD = {f'sqlite:///{prod_dir}/prod.db'!r}\n"
        pytester.makepyfile(app=app, conftest=CONFTEST, paths=paths)
        pytester.makepyfile(**{"tests/test_a_earlier": earlier, "tests/test_items": ITEMS_TEST})
        pytester.makeini("[pytest]\npythonpath = .\n")
        return pytester

    return make


def _run(pytester: pytest.Pytester, trace: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        f"--depstrace-file={trace}", "-p", "no:cacheprovider", *args
    )


def test_leaked_database_url_engine_is_named(
    suite: Callable[[str, str], pytest.Pytester],
    prod_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An engine a cached factory built while an earlier test had leaked DATABASE_URL:
    alone the test passes, in the suite it fails, and the account and the diff name
    tests/test_a_earlier.py::test_export and the line that built the engine."""
    pytester = suite(ENGINE_APP, LEAKING_TEST)
    _run(pytester, "alone.jsonl", "tests/test_items.py").assert_outcomes(passed=1)
    result = _run(pytester, "suite.jsonl")
    result.assert_outcomes(passed=1, failed=1)
    earlier = "tests/test_a_earlier.py::test_export"
    result.stdout.fnmatch_lines(
        [
            "*WRONG_DB  each request ran 1 statement on sqlite:///*/prod.db (engine e1, created at"
            " app.py:9 during call) through dependency 'db' (app:get_db);",
            "*- it is not a test database. Order effect: engine e1 was created during"
            f" {earlier} at app.py:9; run alone, this test builds its own [[]GET /items[]]",
            "*ENGINE_FROM_ENV  each request: engine e1 (*) was built from the environment:"
            " $DATABASE_URL holds exactly this URL (value not shown)*",
            f"*- it was set during {earlier}, the test that built the engine. Order effect:"
            f" engine e1 was created during {earlier} at app.py:9; run alone, this test builds"
            " its own [[]GET /items[]]",
            "*fix  Do not let one test's engines, settings or overrides reach the next*",
        ]
    )
    suite_items = [
        r
        for r in map(json.loads, (pytester.path / "suite.jsonl").read_text().splitlines())
        if r["type"] == "request" and r["test"] == "tests/test_items.py::test_items_empty"
    ]
    assert suite_items[0]["order_effects"] == [
        {
            "kind": "engine",
            "object": "e1",
            "url": f"sqlite:///{prod_dir}/prod.db",
            "created_in_test": earlier,
            "phase": "call",
            "site": "app.py:9",
            "dependency": "db",
            "dependency_id": 0,
        }
    ]
    capsys.readouterr()
    status = main(["diff", str(pytester.path / "alone.jsonl"), str(pytester.path / "suite.jsonl")])
    out = capsys.readouterr().out
    assert status == 1
    assert f"engine e1 was created during {earlier} at app.py:9" in out


@pytest.mark.parametrize(
    ("app", "dependency"),
    [(SETTINGS_APP, ("settings", 1)), (SETTINGS_INSIDE_APP, ("db", 0))],
    ids=["injected", "read-inside"],
)
def test_cached_settings_from_an_earlier_test_are_named(
    suite: Callable[[str, str], pytest.Pytester],
    capsys: pytest.CaptureFixture[str],
    app: str,
    dependency: tuple[str, int],
) -> None:
    """An lru_cache-d BaseSettings an earlier test populated (with monkeypatch, whose undo
    cannot reach the cache) sends the next test to production: the account and the diff
    name that test and the line that built the settings, though it made no request;
    whether the settings are a dependency or read inside one."""
    pytest.importorskip("pydantic_settings")
    pytester = suite(app, CACHING_TEST)
    _run(pytester, "alone.jsonl", "tests/test_items.py").assert_outcomes(passed=1)
    result = _run(pytester, "suite.jsonl")
    result.assert_outcomes(passed=1, failed=1)
    earlier = "tests/test_a_earlier.py::test_settings_read_env"
    result.stdout.fnmatch_lines(
        [
            "*WRONG_DB  GET /items ran 1 statement on sqlite:///*/prod.db (engine e1, created at"
            " app.py:18 during call) through dependency 'db' (app:get_db); it is not a test"
            " database. Order effect: settings object app:Settings was created during"
            f" {earlier} at app.py:12; run alone, this test builds its own",
        ]
    )
    capsys.readouterr()
    alone, whole = (str(pytester.path / name) for name in ("alone.jsonl", "suite.jsonl"))
    assert main(["diff", "--format", "json", alone, whole]) == 1
    report = json.loads(capsys.readouterr().out)
    (test,) = report["tests"]
    assert test["test"] == "tests/test_items.py::test_items_empty"
    assert [c["what"] for c in test["requests"][0]["changes"]] == ["database", "findings"]
    assert test["explanations"] == [
        {
            "kind": "settings",
            "object": "app:Settings",
            "url": None,
            "created_in_test": earlier,
            "phase": "call",
            "site": "app.py:12",
            "dependency": dependency[0],
            "dependency_id": dependency[1],
            "run": "b",
        }
    ]
    assert main(["diff", alone, whole]) == 1
    assert (
        f"  why: in B, settings object app:Settings was created during {earlier} at app.py:12: "
        "run alone, this test builds its own"
    ) in capsys.readouterr().out.splitlines()


SCOPES_APP = """
import os
import sqlalchemy as sa
from fastapi import Depends, FastAPI

engines = {}  # filled by the fixtures

def get_flag() -> str:
    return "real"

def get_conn(name: str):
    with engines[name].connect() as conn:
        yield conn

app = FastAPI(title="scopes")

@app.get("/use/{name}")
def use(name: str, conn=Depends(get_conn), flag: str = Depends(get_flag)) -> str:
    conn.execute(sa.text("SELECT 1"))
    return flag
"""

SCOPES_CONFTEST = """
import os
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from app import app, engines

DATA = os.environ["SCENARIO_DATA"]

@pytest.fixture(scope="session")
def shared():
    engines["shared"] = sa.create_engine(f"sqlite:///{DATA}/test_shared.db")

@pytest.fixture
def warm():
    engines.setdefault("warm", sa.create_engine(f"sqlite:///{DATA}/test_warm.db"))

@pytest.fixture
def client():
    with TestClient(app) as client:
        yield client
"""

SCOPES_TESTS = """
from app import app, get_flag

def test_1(client, shared, warm):
    app.dependency_overrides[get_flag] = lambda: "leaked"  # never removed
    assert client.get("/use/shared").json() == "leaked"

def test_2(client, shared):
    client.get("/use/shared")
    client.get("/use/warm")
"""


def test_setup_counts_as_the_test_and_shared_fixtures_are_no_order_effect(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine a function-scoped fixture made belongs to that test (phase setup); one
    a session-scoped fixture made is no order effect (run alone, the test sets that
    fixture up too); an override an earlier test left registered is one."""
    data = pytester.path / "data"
    data.mkdir()
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.setenv("DEPSTRACE", "1")
    pytester.makepyfile(app=SCOPES_APP, conftest=SCOPES_CONFTEST, test_scopes=SCOPES_TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    _run(pytester, "trace.jsonl").assert_outcomes(passed=2)
    effects = [
        (r["test"].partition("::")[2], r["path"], r["order_effects"])
        for r in map(json.loads, (pytester.path / "trace.jsonl").read_text().splitlines())
        if r["type"] == "request"
    ]
    override = {
        "kind": "override",
        "object": "app:get_flag -> test_scopes:test_1.<locals>.<lambda>",
        "url": None,
        "created_in_test": "test_scopes.py::test_1",
        "phase": None,
        "site": "test_scopes.py:4",
        "dependency": "flag",
        "dependency_id": 1,
    }
    warm = {
        "kind": "engine",
        "object": "e2",
        "url": f"sqlite:///{data}/test_warm.db",
        "created_in_test": "test_scopes.py::test_1",
        "phase": "setup",
        "site": "conftest.py:15",
        "dependency": "conn",
        "dependency_id": 0,
    }
    assert effects == [
        ("test_1", "/use/shared", []),
        ("test_2", "/use/shared", [override]),
        ("test_2", "/use/warm", [warm, override]),
    ]


def test_settings_probe_notes_where_and_is_undone() -> None:
    """A BaseSettings made while tracing is noted with its test, phase and line, found
    by a field holding an engine's URL, and forgotten with the patch on uninstrument."""
    pydantic_settings = pytest.importorskip("pydantic_settings")
    original = pydantic_settings.BaseSettings.__init__

    class Settings(pydantic_settings.BaseSettings):
        database_url: str = "sqlite:////srv/shop/prod.db"

    depstrace.instrument(trace_file=None)
    try:
        previous = set_test_phase("tests/test_a.py::test_one", "call")
        try:
            made, line = Settings(), sys._getframe().f_lineno
        finally:
            restore_test_phase(previous)
        birth = _order.Birth(
            "settings",
            f"{__name__}:{Settings.__qualname__}",
            "tests/test_a.py::test_one",
            "call",
            f"tests/test_order.py:{line}",
        )
        assert _order.birth_of(made) == birth
        assert _order.birth_of(Settings.__new__(Settings)) is None  # never initialised
        assert _order.settings_holding(make_url("sqlite:////srv/shop/prod.db")) == birth
        assert _order.settings_holding(make_url("sqlite:////srv/shop/other.db")) is None
    finally:
        depstrace.uninstrument()
    assert pydantic_settings.BaseSettings.__init__ is original
    assert _order.birth_of(made) is None


@pytest.mark.parametrize(
    ("fixture", "belongs"),
    [
        (None, "t::a"),
        ({"name": "db", "scope": "function", "site": "conftest.py:3"}, "t::a"),
        ({"name": "db", "scope": "module", "site": "conftest.py:3"}, None),
        ({"name": "db", "scope": "session", "site": "conftest.py:3"}, None),
    ],
)
def test_what_a_test_makes_belongs_to_it_unless_a_shared_fixture_made_it(
    fixture: dict[str, str] | None, belongs: str | None
) -> None:
    """The test body and its function-scoped fixtures make the test's objects; a shared
    fixture's objects belong to no test (a test run alone sets it up too)."""
    assert _order.test_of("t::a", fixture) == belongs
    assert _order.test_of(None, fixture) is None


def test_a_fault_in_order_effects_costs_a_warning_not_the_request(
    traced: TraceSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail open: when computing order effects raises, the request is recorded without
    them and the fault is counted once."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    def broken(record: object) -> list[dict[str, object]]:
        raise RuntimeError("boom")

    monkeypatch.setattr(_session, "order_effects", broken)
    app = FastAPI()

    @app.get("/")
    def root() -> int:
        return 1

    with TestClient(app) as client:
        assert client.get("/").json() == 1
    (request,) = traced.requests
    assert (request["status"], request["order_effects"]) == (200, [])
    assert _failopen.internal_errors["order effects"] == 1
