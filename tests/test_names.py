"""Names that point at the object the route used, end to end: pytest with DEPSTRACE=1 in
a subprocess, a real app on real SQLite files, the account and the JSON Lines trace.

Three ways a name used to point at the wrong object: a ``functools.wraps`` wrapper
printed as the function it wraps (and a fix saying to override what the test already
overrides), a decorator whose code lives in ``contextlib.py``, and a repository class
credited with a session that an overridden dependency produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from depstrace._jsonl import read_records

DEPS = """\
import contextlib
import os

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

engine = create_engine(f"sqlite:///{os.environ['SCENARIO_DATA']}/prod.db")
SessionLocal = sessionmaker(bind=engine)


def get_db():
    with SessionLocal() as session:
        yield session


def get_session():
    with SessionLocal() as session:
        yield session


@contextlib.contextmanager
def traced():
    yield


@traced()
def get_engine():
    return engine
"""

TIMING = """\
import functools


def timed(dependency):
    @functools.wraps(dependency)
    def wrapper():
        yield from dependency()

    return wrapper
"""

REPO = """\
from fastapi import Depends
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.deps import get_session


class Repo:
    def __init__(self, session: Session = Depends(get_session)):
        self.session = session

    def count(self):
        return len(self.session.execute(text("SELECT 1")).all())
"""

MAIN = """\
from fastapi import Depends, FastAPI
from sqlalchemy import text

from app.deps import get_db, get_engine
from app.repo import Repo
from app.timing import timed

app = FastAPI(title="names")
timed_db = timed(get_db)


@app.get("/wrapped")
def wrapped(db=Depends(timed_db)):
    return len(db.execute(text("SELECT 1")).all())


@app.get("/decorated")
def decorated(engine=Depends(get_engine)):
    with engine.connect() as connection:
        return len(connection.execute(text("SELECT 1")).all())


@app.get("/repo")
def repo(repo: Repo = Depends()):
    return repo.count()
"""

CONFTEST = """\
import os

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.deps import SessionLocal, get_db, get_session
from app.main import app

test_engine = create_engine(f"sqlite:///{os.environ['SCENARIO_DATA']}/test.db")


def override_get_db():
    with Session(test_engine) as session:
        yield session


def override_get_session():
    # The bug this suite has: the override reuses the app's production factory.
    with SessionLocal() as session:
        yield session


@pytest.fixture
def client():
    app.dependency_overrides[get_db] = override_get_db
    app.dependency_overrides[get_session] = override_get_session
    with TestClient(app) as client:
        yield client
    app.dependency_overrides.clear()
"""

TESTS = """\
def test_wrapped(client):
    assert client.get("/wrapped").json() == 1


def test_decorated(client):
    assert client.get("/decorated").json() == 1


def test_repo(client):
    assert client.get("/repo").json() == 1
"""


def line(path: Path, text: str) -> int:
    """The 1-based line number of the first line containing ``text``."""
    return next(n for n, row in enumerate(path.read_text().splitlines(), 1) if text in row)


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.RunResult:
    """The suite above, run with DEPSTRACE=1."""
    data = pytester.path / "data"
    data.mkdir()
    package = pytester.path / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in (("deps", DEPS), ("timing", TIMING), ("repo", REPO), ("main", MAIN)):
        (package / f"{name}.py").write_text(source)
    pytester.makepyfile(conftest=CONFTEST, test_names=TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("DEPSTRACE_FILE", str(pytester.path / "trace.jsonl"))
    monkeypatch.delenv("DEPSTRACE_TEST_DB", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    return result


def requests(path: Path) -> dict[str, dict[str, Any]]:
    """The request records of the trace, by path."""
    return {r["path"]: r for r in read_records(path) if r["type"] == "request"}


NAME_FIELDS = (
    "name",
    "original",
    "original_site",
    "original_ref",
    "original_wraps",
    "resolved",
    "resolved_site",
    "resolved_ref",
    "resolved_wraps",
    "overridden",
)


def names(node: dict[str, Any]) -> dict[str, Any]:
    """The naming fields of one dependency node."""
    return {key: node[key] for key in NAME_FIELDS}


def check_wraps_wrapper(run: pytest.RunResult, pytester: pytest.Pytester) -> None:
    """The route's timed(get_db) is app.main.timed_db, defined in timing.py, wrapping
    app.deps:get_db; the fix says to override that object, not get_db again."""
    deps, timing = pytester.path / "app/deps.py", pytester.path / "app/timing.py"
    wrapper_site = f"app/timing.py:{line(timing, '@functools.wraps')}"
    get_db_site = f"app/deps.py:{line(deps, 'def get_db')}"
    [node] = requests(pytester.path / "trace.jsonl")["/wrapped"]["dependencies"]
    wraps = {"callable": "app.deps:get_db", "site": get_db_site}
    assert names(node) == {
        "name": "db",
        "original": "app.deps:get_db",
        "original_site": wrapper_site,
        "original_ref": "app.main.timed_db",
        "original_wraps": wraps,
        "resolved": "app.deps:get_db",
        "resolved_site": wrapper_site,
        "resolved_ref": "app.main.timed_db",
        "resolved_wraps": wraps,
        "overridden": False,
    }
    named = f"app.main.timed_db (defined at {wrapper_site}, wraps app.deps:get_db at {get_db_site})"
    run.stdout.fnmatch_lines(
        [
            f"*via        db=app.main.timed_db (defined at {wrapper_site}, wraps app.deps:get_db "
            f"at {get_db_site}; not overridden)",
            f"*fix        Override {named} on the app that serves GET /wrapped, or build its "
            "engine from the test configuration;*",
        ]
    )
    assert "Override app.deps:get_db on the app" not in run.stdout.str()


def check_contextlib_decorator(run: pytest.RunResult, pytester: pytest.Pytester) -> None:
    """A function decorated with a @contextmanager used as a decorator (its wrapper's code
    is in contextlib.py) is sited at the user's own definition."""
    deps = pytester.path / "app/deps.py"
    site = f"app/deps.py:{line(deps, '@traced()')}"  # a decorated def starts at its decorator
    [node] = requests(pytester.path / "trace.jsonl")["/decorated"]["dependencies"]
    wraps = {"callable": "app.deps:get_engine", "site": site}
    assert names(node) == {
        "name": "engine",
        "original": "app.deps:get_engine",
        "original_site": site,
        "original_ref": "app.deps.get_engine",
        "original_wraps": wraps,
        "resolved": "app.deps:get_engine",
        "resolved_site": site,
        "resolved_ref": "app.deps.get_engine",
        "resolved_wraps": wraps,
        "overridden": False,
    }
    run.stdout.fnmatch_lines(["*via        engine=app.deps:get_engine (not overridden)"])
    assert "contextlib.py" not in (pytester.path / "trace.jsonl").read_text()


def check_session_producer(run: pytest.RunResult, pytester: pytest.Pytester) -> None:
    """Repo only holds the session the overridden get_session produced: via is 'session',
    and the chain runs from it up through repo."""
    record = requests(pytester.path / "trace.jsonl")["/repo"]
    repo, session = record["dependencies"]
    assert (repo["name"], session["name"], session["parent"]) == ("repo", "session", repo["id"])
    assert repo["engine_id"] == session["engine_id"]  # both are bound to the engine...
    [db] = record["databases"]
    assert (db["via"], db["via_id"], db["via_chain"]) == (
        "session",
        session["id"],
        ["session", "repo"],
    )
    assert (db["via_callable"], db["via_original"]) == (
        "conftest:override_get_session",
        "app.deps:get_session",
    )
    run.stdout.fnmatch_lines(
        [
            "*via        session=conftest:override_get_session (override of "
            "app.deps:get_session) <- repo=app.repo:Repo (not overridden)",
            "*fix        Override app.deps:get_session on the app that serves GET /repo*",
        ]
    )


def test_names_point_at_the_objects_the_routes_used(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One run (a subprocess is slow), three cases: the wraps wrapper, the contextlib
    decorator and the session a repository class holds, each in the trace and the account."""
    result = run(pytester, monkeypatch)
    check_wraps_wrapper(result, pytester)
    check_contextlib_decorator(result, pytester)
    check_session_producer(result, pytester)
