"""Where a variable holding an engine's URL got its value (``ENGINE_FROM_ENV``'s "why")."""

from __future__ import annotations

import os
import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from depstrace import _envorigin, read_records

SCENARIOS = Path(__file__).parent / "scenarios"


@pytest.fixture(autouse=True)
def _fresh_snapshot() -> Iterator[None]:
    """Each test takes its own snapshot; none is left behind."""
    _envorigin.forget()
    yield
    _envorigin.forget()


def test_origin_compares_the_value_with_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unchanged since the snapshot, changed since, or absent then; unknown without one."""
    for name in ("SHOP_URL_KEPT", "SHOP_URL_CHANGED", "SHOP_URL_NEW"):
        monkeypatch.delenv(name, raising=False)
    assert _envorigin.origin("SHOP_URL_KEPT") == {"set": None, "during_test": None, "lines": []}
    _envorigin.snapshot([("SHOP_URL_KEPT", "sqlite:///a.db"), ("SHOP_URL_CHANGED", "x")])
    _envorigin.snapshot([])  # the first snapshot wins
    monkeypatch.setenv("SHOP_URL_KEPT", "sqlite:///a.db")
    monkeypatch.setenv("SHOP_URL_CHANGED", "sqlite:///b.db")
    monkeypatch.setenv("SHOP_URL_NEW", "sqlite:///c.db")
    assert [
        _envorigin.origin(name)["set"]
        for name in ("SHOP_URL_KEPT", "SHOP_URL_CHANGED", "SHOP_URL_NEW")
    ] == ["before_start", "changed", "during_run"]


def test_snapshot_holds_no_value() -> None:
    """The snapshot keeps hashes: no URL (and no password) sits in depstrace's memory."""
    _envorigin.snapshot([("SHOP_URL", "postgresql://app:s3cr3t@db/shop")])
    assert "s3cr3t" not in repr(_envorigin._started)


CONFTEST = """\
import os

os.environ.setdefault("SHOP_URL", "sqlite:///test.db")
os.environ["SHOP_URL"] = "sqlite:///test.db"
# os.environ["SHOP_URL"] = "a comment never counts"
url = os.environ.get("SHOP_URL")  # reading is not setting
same = os.environ["SHOP_URL"] == url
SHOP_URL_OTHER = 1


def fixture(monkeypatch):
    monkeypatch.setenv("SHOP_URL", "sqlite:///test.db")
"""

INI = """\
[pytest]
env =
    D:SHOP_URL=sqlite:///test.db
    OTHER=1
"""

PYPROJECT = """\
[tool.pytest.ini_options]
env = ["OTHER=1", "SHOP_URL=sqlite:///test.db"]
"""


def test_lines_that_set_a_variable_are_found_and_never_quoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Imported conftest files, pytest's ini file and ./.env are read for lines that set
    the variable; reads, comments and other names are not; no line's text is kept."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    module = types.ModuleType("shop_conftest")
    module.__file__ = str(tmp_path / "conftest.py")
    monkeypatch.setitem(sys.modules, "shop_conftest", module)
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / ".env").write_text("# SHOP_URL=comment\nexport SHOP_URL=sqlite:///prod.db\n")
    _envorigin.note_config_files([tmp_path / "pytest.ini", tmp_path / "pyproject.toml"])
    lines = _envorigin.origin("SHOP_URL")["lines"]
    assert lines == [
        {
            "at": "conftest.py:3",
            "how": "calls os.environ.setdefault, which keeps a value that is already set",
        },
        {"at": "conftest.py:4", "how": "assigns os.environ[...]"},
        {"at": "conftest.py:12", "how": "calls monkeypatch.setenv"},
        {"at": ".env:2", "how": "sets it in a .env file (loaded by load_dotenv or the shell)"},
        {"at": "pyproject.toml:2", "how": "sets it in pytest's env setting (pytest-env)"},
        {"at": "pytest.ini:3", "how": "sets it in pytest's env setting (pytest-env)"},
    ]
    assert "sqlite" not in repr(lines)


# The ENGINE_FROM_ENV message's tail for d_env_database_url, and the fix under pytest.
EXPORTED_TAIL = (
    "$DATABASE_URL was already set when pytest started (exported by the shell, a CI job "
    "or a process manager) and kept that value; conftest.py:17 calls "
    "os.environ.setdefault, which keeps a value that is already set"
)
PYTEST_FIX = (
    "Give $DATABASE_URL the test value before anything imports the app: in pytest's "
    "configuration (pytest-env: env = DATABASE_URL=... under [pytest] or "
    "[tool.pytest.ini_options]), by assignment at the top of the root conftest.py before "
    'the app import (os.environ["DATABASE_URL"] = ..., not setdefault), or exported by '
    "the CI job that runs the tests. Settings built at import exist before any fixture "
    "runs: monkeypatch.setenv helps only when they are built lazily (an lru_cache-d "
    "get_settings(), then get_settings.cache_clear())."
)


def run_scenario(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prefix: str = "", **env: str
) -> list[dict[str, str]]:
    """Run tests/scenarios/d_env_database_url traced (``prefix`` heads its conftest);
    return its ENGINE_FROM_ENV findings."""
    shutil.copytree(SCENARIOS / "d_env_database_url", pytester.path, dirs_exist_ok=True)
    conftest = pytester.path / "conftest.py"
    conftest.write_text(prefix + conftest.read_text())
    data = pytester.path / "data"
    data.mkdir()
    for name in ("DATABASE_URL", "DEPSTRACE_TEST_DB", "DEPSTRACE_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.setenv("PYTHONPATH", str(pytester.path), prepend=os.pathsep)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(data=data))
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    worker = env.get("PYTEST_XDIST_WORKER")
    trace = pytester.path / ".depstrace" / (f"trace-{worker}.jsonl" if worker else "trace.jsonl")
    return [
        finding
        for record in read_records(trace)
        if record["type"] == "request"
        for finding in record["findings"]
        if finding["code"] == "ENGINE_FROM_ENV"
    ]


def test_an_exported_url_kept_by_setdefault_is_explained(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: CI exports DATABASE_URL, the conftest's setdefault keeps it. The
    message says it was exported and names the setdefault line; the fix acts before import."""
    findings = run_scenario(pytester, monkeypatch, DATABASE_URL="sqlite:///{data}/prod.db")
    url = f"sqlite:///{pytester.path / 'data' / 'prod.db'}"
    assert [f["message"] for f in findings] == [
        f"{where}: engine e1 ({url}, created at app/database.py:8 during import) was built "
        f"from the environment: $DATABASE_URL holds exactly this URL (value not shown). "
        f"{EXPORTED_TAIL}"
        for where in ("POST /items", "POST /items", "GET /items")
    ]
    assert {f["hint"] for f in findings} == {PYTEST_FIX}


SETS_PROD_CONFTEST = """\
import os

os.environ["DATABASE_URL"] = f"sqlite:///{os.environ['SCENARIO_DATA']}/prod.db"  # oops
"""


def test_a_url_set_during_the_run_is_told_apart(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing exported: a conftest line set the production URL itself; the message says
    the run set it, and where."""
    findings = run_scenario(pytester, monkeypatch, SETS_PROD_CONFTEST)
    assert {f["message"].split("(value not shown). ", 1)[1] for f in findings} == {
        "$DATABASE_URL was not set when pytest started: the run set it; conftest.py:3 "
        "assigns os.environ[...]; conftest.py:20 calls os.environ.setdefault, which keeps "
        "a value that is already set"
    }


def test_an_xdist_worker_says_whose_start_it_compares_with(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pytest-xdist worker (as the plugin sees one: PYTEST_XDIST_WORKER set) inherited the
    controller's environment after its conftests ran, and says so."""
    findings = run_scenario(
        pytester, monkeypatch, DATABASE_URL="sqlite:///{data}/prod.db", PYTEST_XDIST_WORKER="gw0"
    )
    assert {f["message"].split("(value not shown). ", 1)[1] for f in findings} == {
        EXPORTED_TAIL.replace(
            "when pytest started",
            "when this pytest-xdist worker started (after the controller's conftests ran)",
        )
    }


def test_lines_that_cannot_have_produced_the_value_are_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the value known, a line whose literal is another value is not named (a
    setdefault stays: it kept the value), one whose value cannot be read "may" set it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conftest.py").write_text(
        "import os\n"
        'os.environ["SHOP_URL"] = "sqlite:///test.db"\n'
        'os.environ.setdefault("SHOP_URL", "sqlite:///test.db")\n'
        "os.environ['SHOP_URL'] = TEST_URL\n"
        'os.environ["SHOP_URL"] = f"sqlite:///{DATA}/prod.db"\n'
    )
    module = types.ModuleType("shop_conftest")
    module.__file__ = str(tmp_path / "conftest.py")
    monkeypatch.setitem(sys.modules, "shop_conftest", module)
    (tmp_path / ".env").write_text("SHOP_URL=sqlite:///dev.db\nSHOP_URL='sqlite:///data/prod.db'\n")
    monkeypatch.setenv("SHOP_URL", "sqlite:///data/prod.db")
    assert _envorigin.origin("SHOP_URL")["lines"] == [
        {
            "at": "conftest.py:3",
            "how": "calls os.environ.setdefault, which keeps a value that is already set",
        },
        {"at": "conftest.py:4", "how": "may assign os.environ[...]"},
        {"at": "conftest.py:5", "how": "assigns os.environ[...]"},
        {"at": ".env:2", "how": "sets it in a .env file (loaded by load_dotenv or the shell)"},
    ]


LEAKY_APP = """
import os
from functools import lru_cache

from fastapi import Depends, FastAPI
from sqlalchemy import create_engine, text

app = FastAPI()


@lru_cache
def get_engine():
    return create_engine(os.environ["SHOP_URL"])


@app.get("/count")
def count(engine=Depends(get_engine)) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT 1")).scalar_one()
"""

LEAKY_CONFTEST = """
import os

TEST_URL = f"sqlite:///{os.environ['SCENARIO_DATA']}/test.db"
os.environ["SHOP_URL"] = TEST_URL  # the test database, set at import


def reset(monkeypatch):
    monkeypatch.setenv("SHOP_URL", TEST_URL)
"""

LEAKY_TESTS = """
import os

from fastapi.testclient import TestClient

from shop import app


def test_url_from_env():
    os.environ["SHOP_URL"] = f"sqlite:///{os.environ['SCENARIO_DATA']}/prod.db"  # never undone


def test_count():
    assert TestClient(app).get("/count").json() == 1
"""


def test_a_value_a_test_left_behind_names_that_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production URL was put in the environment by an earlier test that never
    restored it: the message names that test, not the conftest line that set the test
    URL at import, and a fixture's line whose value cannot be read "may" have set it."""
    data = pytester.path / "data"
    data.mkdir()
    pytester.makepyfile(shop=LEAKY_APP, conftest=LEAKY_CONFTEST, test_shop=LEAKY_TESTS)
    monkeypatch.delenv("SHOP_URL", raising=False)
    monkeypatch.delenv("DEPSTRACE_TEST_DB", raising=False)
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("DEPSTRACE_FILE", str(pytester.path / "trace.jsonl"))
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.setenv("PYTHONPATH", str(pytester.path), prepend=os.pathsep)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    messages = [
        finding["message"].split("(value not shown). ", 1)[1]
        for record in read_records(pytester.path / "trace.jsonl")
        if record["type"] == "request"
        for finding in record["findings"]
        if finding["code"] == "ENGINE_FROM_ENV"
    ]
    assert messages == [
        "$SHOP_URL was not set when pytest started: it was set during "
        "test_shop.py::test_url_from_env, which never restored it; conftest.py:8 may call "
        "monkeypatch.setenv"
    ]
