"""The pytest plugin, end to end in a subprocess: activation, summary, file, exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

APP = """
import sqlalchemy as sa
from typing import Annotated, Iterator
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker

import os
DATA = os.environ["SCENARIO_DATA"]
engine = sa.create_engine(f"sqlite:///{DATA}/prod.db")
SessionLocal = sessionmaker(bind=engine)

def get_db() -> Iterator[Session]:
    with SessionLocal() as session:
        yield session

app = FastAPI(title="scenario")

@app.get("/items")
def items(db: Annotated[Session, Depends(get_db)]) -> int:
    return len(db.execute(sa.text("SELECT 1")).all())

@app.get("/stats")
def stats() -> int:
    with SessionLocal() as session:  # bypasses Depends: always the module engine
        return len(session.execute(sa.text("SELECT 1")).all())
"""

CONFTEST = """
import os
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from app import app, get_db

test_engine = sa.create_engine(f"sqlite:///{os.environ['SCENARIO_DATA']}/test.db")

def override_get_db():
    with Session(test_engine) as session:
        yield session

@pytest.fixture
def client():
    app.dependency_overrides[get_db] = override_get_db
    with TestClient(app) as client:
        yield client
    app.dependency_overrides.clear()
"""

TESTS = """
def test_items(client):
    assert client.get("/items").json() == 1

def test_stats(client):
    assert client.get("/stats").json() == 1
"""


@pytest.fixture
def scenario(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A tiny app whose /stats bypasses Depends and reaches prod.db."""
    data = pytester.path / "data"
    data.mkdir()
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.delenv("DEPSTRACE", raising=False)
    monkeypatch.delenv("DEPSTRACE_FILE", raising=False)
    monkeypatch.delenv("DEPSTRACE_TEST_DB", raising=False)
    pytester.makepyfile(app=APP, conftest=CONFTEST, test_app=TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    return pytester


def records(path: Path) -> list[dict[str, object]]:
    """All records of a trace file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_summary_names_the_escaping_request(
    scenario: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEPSTRACE=1 -v: tests pass, and the summary shows /stats reaching prod.db and why,
    in one paragraph per request (the grouped default: tests/test_account.py)."""
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("COLUMNS", "1000")  # unwrapped, to match whole lines
    result = scenario.runpytest_subprocess("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*= depstrace =*",
            "depstrace: 1 of 2 requests reached a non-test database, in 1 test. Trace: *trace.jsonl",
            "test database rule: default rule*",
            "test_app.py::test_stats",
            "  GET /stats -> 200",
            "    served by  app 'scenario' [[]app1[]], endpoint app:stats",
            "    database   sqlite:///*/data/prod.db  [[]engine e1, created at app.py:8 during import; 1 statement[]]",
            "    via        no dependency: opened outside Depends",
            "    WRONG_DB   GET /stats ran 1 statement on sqlite:///*/prod.db (engine e1, created at app.py:8 during import) through no dependency of this request; it is not a test database",
            "    DI_BYPASS  GET /stats used engine e1* It was reached from the endpoint itself, app.py:24 in app:stats(), through module-level app.SessionLocal.",
            "    fix        *",
            "",
            "why:",
            "  WRONG_DB x1   a statement reached a database that does not match the test-database rule (depstrace explain WRONG_DB)",
            "  DI_BYPASS x1  a session was opened outside Depends, where overrides cannot reach it (depstrace explain DI_BYPASS)",
        ]
    )
    assert "test_items" not in result.stdout.str().split("= depstrace =")[1]


def test_trace_file_has_the_documented_records(
    scenario: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JSON Lines file holds session, engine, request and summary records with test ids."""
    monkeypatch.setenv("DEPSTRACE", "yes")
    scenario.runpytest_subprocess().assert_outcomes(passed=2)
    trace = records(scenario.path / ".depstrace" / "trace.jsonl")
    assert [r["type"] for r in trace if r["type"] != "outside_request"] == [
        "session",
        "engine",
        "engine",
        "request",
        "request",
        "summary",
    ]
    assert all(r["schema"] == 1 for r in trace)
    items, stats = (r for r in trace if r["type"] == "request")
    assert items["test"] == "test_app.py::test_items"
    assert items["dependencies"][0]["overridden"] is True
    assert items["dependencies"][0]["original"] == "app:get_db"
    assert items["dependencies"][0]["resolved"] == "conftest:override_get_db"
    assert items["databases"][0]["via"] == "db"
    assert items["databases"][0]["is_test"] is True
    assert stats["test"] == "test_app.py::test_stats"
    assert [f["code"] for f in stats["findings"]] == ["WRONG_DB", "DI_BYPASS"]
    assert trace[-1] == {
        "type": "summary",
        "schema": 1,
        "requests": 2,
        "wrong_db_requests": 1,
        "engines": 2,
        "internal_errors": 0,
    }


def test_clean_run_says_so_in_one_line(
    scenario: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With only correctly overridden requests the account is one line."""
    monkeypatch.setenv("DEPSTRACE", "on")
    result = scenario.runpytest_subprocess("-k", "items")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(
        ["*= depstrace =*", "depstrace: 1 request in 1 test, all on test databases. Trace: *"]
    )


def test_option_enables_and_file_option_moves_the_trace(scenario: pytest.Pytester) -> None:
    """--depstrace turns tracing on without the variable; --depstrace-file chooses the file."""
    result = scenario.runpytest_subprocess("--depstrace", "--depstrace-file", "out/t.jsonl")
    result.assert_outcomes(passed=2)
    assert (scenario.path / "out" / "t.jsonl").exists()
    result.stdout.fnmatch_lines(["*1 of 2 requests reached a non-test database*"])


def test_disabled_writes_and_prints_nothing(
    scenario: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEPSTRACE=0 (or unset) means no summary and no trace file."""
    monkeypatch.setenv("DEPSTRACE", "0")
    result = scenario.runpytest_subprocess()
    result.assert_outcomes(passed=2)
    assert "= depstrace =" not in result.stdout.str()
    assert not (scenario.path / ".depstrace").exists()


def test_p_no_depstrace_wins(scenario: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """-p no:depstrace unloads the plugin even with DEPSTRACE=1."""
    monkeypatch.setenv("DEPSTRACE", "1")
    result = scenario.runpytest_subprocess("-p", "no:depstrace")
    result.assert_outcomes(passed=2)
    assert "= depstrace =" not in result.stdout.str()
    assert not (scenario.path / ".depstrace").exists()


def test_bad_value_is_a_usage_error(
    scenario: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown DEPSTRACE value stops pytest with exit 4 and names the accepted values."""
    monkeypatch.setenv("DEPSTRACE", "maybe")
    result = scenario.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: depstrace: DEPSTRACE='maybe' is not a valid value. Set DEPSTRACE to one of "
            "1, true, yes, on to enable depstrace, or to one of 0, false, no, off (or unset it) "
            "to disable it."
        ]
    )


def test_assertion_helper_fails_the_test_with_the_account(
    scenario: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """assert_all_resolved_to_test_db fails inside the test, in a fixture teardown and at session end."""
    monkeypatch.setenv("DEPSTRACE", "1")
    scenario.makepyfile(
        test_assert="""
import pytest
import depstrace

@pytest.fixture
def guarded(client):
    yield client
    depstrace.assert_all_resolved_to_test_db()

def test_inline(client):
    client.get("/stats")
    depstrace.assert_all_resolved_to_test_db()

def test_in_teardown(guarded):
    guarded.get("/stats")

def test_clean_inline(client):
    client.get("/items")
    depstrace.assert_all_resolved_to_test_db()

def test_custom_rule_accepts_prod(client):
    client.get("/stats")
    depstrace.assert_all_resolved_to_test_db("*.db")

def test_zz_session(client):
    with pytest.raises(AssertionError, match="3 of 4 requests"):
        depstrace.assert_all_resolved_to_test_db(scope="session")
"""
    )
    result = scenario.runpytest_subprocess("test_assert.py")
    result.assert_outcomes(passed=4, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: 1 of 1 request reached a database that is not a test database (default rule*):",
            "*  GET /stats -> 200 in test_assert.py::test_inline [[]call[]]",
            "*    database   sqlite:///*/prod.db  [[]engine e1, created at app.py:8 during import; 1 statement[]]",
        ]
    )
    result.stdout.fnmatch_lines(
        ["ERROR test_assert.py::test_in_teardown - AssertionError: 1 of 1 request*"]
    )


def test_plugin_import_does_not_import_fastapi_or_sqlalchemy(pytester: pytest.Pytester) -> None:
    """Importing the plugin (and the package) pulls in neither FastAPI nor SQLAlchemy."""
    result = pytester.run(
        sys.executable,
        "-c",
        "import sys, depstrace.pytest_plugin, depstrace; "
        "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'starlette') if m in sys.modules))",
    )
    assert result.ret == 0
    assert result.stdout.lines == ["[]"]


def test_xdist_workers_write_one_file_each(
    scenario: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a pytest-xdist worker the trace file name carries the worker id."""
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    scenario.runpytest_subprocess().assert_outcomes(passed=2)
    assert (scenario.path / ".depstrace" / "trace-gw1.jsonl").exists()
    assert not (scenario.path / ".depstrace" / "trace.jsonl").exists()
