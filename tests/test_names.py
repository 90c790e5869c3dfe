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
    monkeypatch.setenv("COLUMNS", "1000")  # one line per fact, as the checks below read them
    # -v: the per-request paragraphs, where each request's chain has its own line.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=3)
    return result


def requests(path: Path) -> dict[str, dict[str, Any]]:
    """The request records of the trace, by path."""
    return {r["path"]: r for r in read_records(path) if r["type"] == "request"}


NAME_FIELDS = (
    "name",
    "original",
    "original_site",
    "original_alias",
    "resolved",
    "resolved_site",
    "resolved_alias",
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
    alias = {"ref": "app.main.timed_db", "wraps": "app.deps:get_db", "wraps_site": get_db_site}
    assert names(node) == {
        "name": "db",
        "original": "app.deps:get_db",
        "original_site": wrapper_site,
        "original_alias": alias,
        "resolved": "app.deps:get_db",
        "resolved_site": wrapper_site,
        "resolved_alias": alias,
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
    # Its own name finds it (the decorator was applied in place): no alias needed.
    assert names(node) == {
        "name": "engine",
        "original": "app.deps:get_engine",
        "original_site": site,
        "original_alias": None,
        "resolved": "app.deps:get_engine",
        "resolved_site": site,
        "resolved_alias": None,
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
    # The overridden node says where the override was set; the others carry no such key.
    assert session["override_site"].startswith("conftest.py:")
    assert "override_site" not in repo
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
            "app.deps:get_session, set at conftest.py:*) <- repo=app.repo:Repo (not overridden)",
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


# --- the naming rules, unit by unit ----------------------------------------------------------


def node(**fields: Any) -> dict[str, Any]:
    """A ``dependencies[]`` entry with the naming fields, plain unless overridden in ``fields``."""
    base: dict[str, Any] = {
        "id": 0,
        "name": "db",
        "parent": None,
        "overridden": False,
        "original": "app.deps:get_db",
        "original_site": "app/deps.py:9",
        "original_alias": None,
    }
    base.update(fields)
    for key in ("", "_site", "_alias"):
        base.setdefault(f"resolved{key}", base[f"original{key}"])
    return base


def alias(ref: str | None, wraps: str | None = None, site: str | None = None) -> dict[str, Any]:
    """An ``*_alias`` value."""
    return {"ref": ref, "wraps": wraps, "wraps_site": site}


def test_labels_of_each_kind_of_callable() -> None:
    """Plain names stay as they were; wrappers, partials, instances and reloaded functions
    are named by the global holding them with what tells them apart."""
    from depstrace._names import callable_label, node_label

    wrapper = alias("app.main.timed_db", "app.deps:get_db", "app/deps.py:9")
    cases = {
        "plain": node(),
        "wrapper": node(original_site="app/timing.py:5", original_alias=wrapper),
        "inline wrapper": node(
            original_site="app/timing.py:5", original_alias=wrapper | {"ref": None}
        ),
        "partial": node(
            original_alias=alias("app.deps.read_only_db", "app.deps:get_db", "app/deps.py:9")
        ),
        "instance": node(
            original="app.auth:Checker()",
            original_site="app/auth.py:3",
            original_alias=alias("app.main.checker"),
        ),
        "instance held nowhere": node(original="app.auth:Checker()", original_alias=alias(None)),
        "reloaded": node(original_alias=alias("app.main.get_db")),
    }
    assert {case: node_label(n) for case, n in cases.items()} == {
        "plain": "db=app.deps:get_db (not overridden)",
        "wrapper": "db=app.main.timed_db (defined at app/timing.py:5, wraps app.deps:get_db at "
        "app/deps.py:9; not overridden)",
        "inline wrapper": "db=app.deps:get_db (defined at app/timing.py:5, wraps app.deps:get_db "
        "at app/deps.py:9; not overridden)",
        "partial": "db=app.deps.read_only_db (wraps app.deps:get_db at app/deps.py:9; "
        "not overridden)",
        "instance": "db=app.main.checker (app.auth:Checker() at app/auth.py:3; not overridden)",
        "instance held nowhere": "db=app.auth:Checker() (not overridden)",
        "reloaded": "db=app.main.get_db (app.deps:get_db at app/deps.py:9; not overridden)",
    }
    overridden = node(
        overridden=True,
        original_site="app/timing.py:5",
        original_alias=wrapper,
        resolved="conftest:fake_db",
        resolved_site="conftest.py:4",
        resolved_alias=None,
    )
    assert node_label(overridden) == (
        "db=conftest:fake_db (override of app.main.timed_db (defined at app/timing.py:5, "
        "wraps app.deps:get_db at app/deps.py:9))"
    )
    assert node_label(overridden | {"override_site": "tests/conftest.py:12"}) == (
        "db=conftest:fake_db (override of app.main.timed_db (defined at app/timing.py:5, "
        "wraps app.deps:get_db at app/deps.py:9), set at tests/conftest.py:12)"
    )
    assert (
        callable_label(cases["plain"], "original", site=True) == "app.deps:get_db (app/deps.py:9)"
    )
    assert callable_label(cases["wrapper"], "original", inline=True) == (
        "app.main.timed_db, defined at app/timing.py:5, wraps app.deps:get_db at app/deps.py:9"
    )


def test_traces_without_via_id_still_find_their_node() -> None:
    """A trace written before via_id existed names its chain by the via name and engine."""
    from depstrace._names import chain_label, via_node

    nodes = {0: node(id=0, name="repo", engine_id="e1"), 1: node(id=1, parent=0, engine_id="e1")}
    old = {"via": "db", "engine_id": "e1"}
    assert via_node(old, nodes) is nodes[1]
    assert via_node(old | {"via_id": 0}, nodes) is nodes[0]
    assert via_node({"via": None, "engine_id": "e1"}, nodes) is None
    assert chain_label(nodes[1], nodes) == (
        "db=app.deps:get_db (not overridden) <- repo=app.deps:get_db (not overridden)"
    )


def test_producer_wins_over_holders() -> None:
    """provider_of: a bound node with a bound node below it only holds the session; among
    producers, a node whose value is the session wins over one holding it in an attribute."""
    from depstrace._records import DependencyNode, NodeFacts, RequestRecord

    def dependency(ident: int, name: str, parent: int | None, held: bool = False) -> DependencyNode:
        facts = NodeFacts(
            name=name,
            original=f"m:{name}",
            original_site=None,
            resolved=f"m:{name}",
            resolved_site=None,
            overridden=False,
            kind="sync",
            callable_type="function",
            scope=None,
            use_cache=True,
        )
        node = DependencyNode(facts, ident, parent, None, False, 0.0)
        node.engine_id, node.engine_held = "e1", held
        return node

    record = RequestRecord("r1", "http", "GET", "/", None, "call", "app1", "app", None)
    record.dependencies = [
        dependency(0, "service", None, held=True),
        dependency(1, "repo", 0, held=True),
        dependency(2, "session", 1),
        dependency(3, "audit", None, held=True),  # holds a session it opened itself
    ]
    assert record.provider_of("e1") is record.dependencies[2]
    record.dependencies = [record.dependencies[3], dependency(4, "other", None)]
    assert record.provider_of("e1") is record.dependencies[1]
    record.dependencies = [record.dependencies[0]]
    assert record.provider_of("e1") is record.dependencies[0]
    assert record.provider_of("e2") is None
