"""Tests for ``depstrace doctor``: real app modules on disk, loaded by the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

import depstrace
from depstrace.cli import main

DEFAULT_RULE = (
    'default rule (a word of the database name starts with "test", as in shop_test or '
    "testdb; SQLite in memory or in a test run's temporary directories)"
)

DB = """\
import os

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

engine = create_engine(os.environ["APP_DATABASE_URL"])
SessionLocal = sessionmaker(bind=engine)


def get_settings():
    return {"debug": False}


def get_db():
    with SessionLocal() as session:
        yield session
"""

CLEAN_APP = """\
from fastapi import Depends, FastAPI, WebSocket

from db import get_db, get_settings


def fake_db(settings=Depends(get_settings)):
    yield None


def fake_settings():
    return {"debug": True}


app = FastAPI(title="Clean")


@app.get("/items/{item_id}")
def read_item(item_id: int, db=Depends(get_db)):
    return item_id


@app.websocket("/ws")
async def stream(websocket: WebSocket, settings=Depends(get_settings)):
    await websocket.close()


app.dependency_overrides[get_db] = fake_db
app.dependency_overrides[get_settings] = fake_settings
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty app directory as the working directory; its modules are forgotten after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APP_DATABASE_URL", f"sqlite:///{tmp_path / 'test_app.db'}")
    monkeypatch.delenv("DEPSTRACE_TEST_DB", raising=False)
    yield tmp_path
    forget_modules_under(tmp_path)


def forget_modules_under(directory: Path) -> None:
    """Drop the modules imported from ``directory`` (the next test writes its own)."""
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(directory)):
            del sys.modules[name]


def write(directory: Path, **modules: str) -> None:
    """Write ``name.py`` files."""
    for name, source in modules.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source))


def line(path: Path, text: str) -> int:
    """The 1-based line number of the first line containing ``text``."""
    return next(n for n, row in enumerate(path.read_text().splitlines(), 1) if text in row)


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``depstrace doctor ARGV`` in process; return (status, stdout, stderr)."""
    status = main(["doctor", *argv])
    out, err = capsys.readouterr()
    assert not depstrace.is_instrumented()
    return status, out, err


def doctor_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """Run ``depstrace doctor --json ARGV``; return (status, document)."""
    status, out, err = doctor(capsys, "--json", *argv)
    assert err == ""
    return status, json.loads(out)


def codes(document: dict[str, Any]) -> list[str]:
    """The problem codes of a doctor document, in order."""
    return [problem["code"] for problem in document["problems"]]


# --- a clean app ------------------------------------------------------------------------


def test_clean_app_text(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A clean app prints routes, trees, overrides and the engine, and exits 0."""
    write(project, db=DB, app=CLEAN_APP)
    app_py, db_py = project / "app.py", project / "db.py"
    status, out, err = doctor(capsys, "app:app")
    assert (status, err) == (0, "")
    url = f"sqlite:///{project / 'test_app.db'}"
    assert out.splitlines() == [
        "depstrace doctor app:app",
        "",
        f"app 'Clean' (app{_app_number(out)}), created at app.py:{line(app_py, 'FastAPI(')} during import",
        "  routes:",
        f"    GET /items/{{item_id}}  app:read_item  app.py:{line(app_py, '@app.get')}",
        f"      db: db:get_db  db.py:{line(db_py, 'def get_db')}  -> override app:fake_db (app.py:{line(app_py, 'def fake_db')})",
        f"        settings: db:get_settings  db.py:{line(db_py, 'def get_settings')}  -> override app:fake_settings (app.py:{line(app_py, 'def fake_settings')})",
        f"    WEBSOCKET /ws  app:stream  app.py:{line(app_py, '@app.websocket')}",
        f"      settings: db:get_settings  db.py:{line(db_py, 'def get_settings')}  -> override app:fake_settings (app.py:{line(app_py, 'def fake_settings')})",
        "  overrides:",
        f"    db:get_db (db.py:{line(db_py, 'def get_db')}) -> app:fake_db (app.py:{line(app_py, 'def fake_db')}): used by GET /items/{{item_id}} (db)",
        f"    db:get_settings (db.py:{line(db_py, 'def get_settings')}) -> app:fake_settings (app.py:{line(app_py, 'def fake_settings')}): used by GET /items/{{item_id}} (settings), WEBSOCKET /ws (settings)",
        "",
        f"engines (test database: {DEFAULT_RULE}):",
        f"  e1 {url}  created at db.py:{line(db_py, 'create_engine(os')} during import  test database",
        "      reachable as db.SessionLocal, db.engine",
        "      URL equals environment variable APP_DATABASE_URL",
        "",
        "no problems found",
    ]


def _app_number(out: str) -> str:
    """The app id's number as printed (ids count every app the process has seen)."""
    return out.split("(app", 1)[1].split(")", 1)[0]


def test_clean_app_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the same facts as one document (docs/doctor.md)."""
    write(project, db=DB, app=CLEAN_APP)
    app_py, db_py = project / "app.py", project / "db.py"
    status, document = doctor_json(capsys, "app:app")
    assert status == 0
    get_db = f"db.py:{line(db_py, 'def get_db')}"
    get_settings = f"db.py:{line(db_py, 'def get_settings')}"
    fake_db = f"app.py:{line(app_py, 'def fake_db')}"
    fake_settings = f"app.py:{line(app_py, 'def fake_settings')}"
    settings_node = {
        "name": "settings",
        "callable": "db:get_settings",
        "site": get_settings,
        "alias": None,
        "override": {"callable": "app:fake_settings", "site": fake_settings},
        "dependencies": [],
    }
    app_id = document["app"]["id"]
    assert document == {
        "schema": 1,
        "target": "app:app",
        "app": {
            "id": app_id,
            "title": "Clean",
            "created_at": f"app.py:{line(app_py, 'FastAPI(')}",
            "created_phase": "import",
            "mount_path": None,
            "routes": [
                {
                    "kind": "http",
                    "methods": ["GET"],
                    "path": "/items/{item_id}",
                    "name": "read_item",
                    "endpoint": "app:read_item",
                    "endpoint_site": f"app.py:{line(app_py, '@app.get')}",
                    "dependencies": [
                        {
                            "name": "db",
                            "callable": "db:get_db",
                            "site": get_db,
                            "alias": None,
                            "override": {"callable": "app:fake_db", "site": fake_db},
                            "dependencies": [settings_node],
                        }
                    ],
                    "lookalikes": [],
                },
                {
                    "kind": "websocket",
                    "methods": [],
                    "path": "/ws",
                    "name": "stream",
                    "endpoint": "app:stream",
                    "endpoint_site": f"app.py:{line(app_py, '@app.websocket')}",
                    "dependencies": [settings_node],
                    "lookalikes": [],
                },
            ],
            "mounts": [],
            "overrides": [
                {
                    "key": "db:get_db",
                    "key_site": get_db,
                    "value": "app:fake_db",
                    "value_site": fake_db,
                    "used_by": ["GET /items/{item_id} (db)"],
                    "needed_by_mounted_apps": [],
                    "lookalikes": [],
                    "unknown_routes": [],
                },
                {
                    "key": "db:get_settings",
                    "key_site": get_settings,
                    "value": "app:fake_settings",
                    "value_site": fake_settings,
                    "used_by": ["GET /items/{item_id} (settings)", "WEBSOCKET /ws (settings)"],
                    "needed_by_mounted_apps": [],
                    "lookalikes": [],
                    "unknown_routes": [],
                },
            ],
            "unexamined_routes": [],
        },
        "other_apps": [],
        "engines": [
            {
                "id": "e1",
                "url": f"sqlite:///{project / 'test_app.db'}",
                "backend": "sqlite",
                "driver": "pysqlite",
                "database": "test_app.db",
                "host": None,
                "port": None,
                "created_at": f"db.py:{line(db_py, 'create_engine(os')}",
                "created_phase": "import",
                "reachable_as": ["db.SessionLocal", "db.engine"],
                "env_vars": ["APP_DATABASE_URL"],
                "is_test": True,
            }
        ],
        "test_db_rule": DEFAULT_RULE,
        "problems": [],
    }


def test_factory(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """MODULE:create_app() and --factory call the factory; the app made is examined."""
    write(
        project,
        factory="""\
        from fastapi import FastAPI


        def create_app():
            app = FastAPI(title="Made")

            @app.get("/ping")
            def ping():
                return "pong"

            return app
        """,
    )
    for argv in (["factory:create_app()"], ["--factory", "factory:create_app"]):
        status, document = doctor_json(capsys, *argv)
        assert status == 0
        assert document["app"]["title"] == "Made"
        assert (
            document["app"]["created_at"]
            == f"factory.py:{line(project / 'factory.py', 'FastAPI(')}"
        )
        assert [route["path"] for route in document["app"]["routes"]] == ["/ping"]
        sys.modules.pop("factory")


# --- problems ---------------------------------------------------------------------------


def test_mounted_sub_app_with_the_parent_override(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An override on the parent is named for the mounted app's route that needs it."""
    write(
        project,
        db=DB,
        app="""\
        from fastapi import Depends, FastAPI
        from starlette.applications import Starlette

        from db import get_db

        app = FastAPI(title="Parent")
        v2 = FastAPI(title="V2")


        @v2.get("/items")
        def items(db=Depends(get_db)):
            return []


        def fake_db():
            yield None


        app.mount("/v2", v2)
        app.mount("/static", Starlette())
        app.dependency_overrides[get_db] = fake_db
        """,
    )
    status, document = doctor_json(capsys, "app:app")
    assert status == 1
    parent, mount = document["app"], document["app"]["mounts"][0]
    sub = mount["app"]
    assert (mount["path"], sub["title"], sub["mount_path"]) == ("/v2", "V2", "/v2")
    assert document["app"]["mounts"][1] == {
        "path": "/static",
        "app": None,
        "app_type": "starlette.applications:Starlette",
        "same_as": None,
    }
    assert sub["routes"][0]["path"] == "/v2/items"
    assert sub["routes"][0]["dependencies"][0]["override"] is None
    assert parent["overrides"][0]["used_by"] == []
    assert parent["overrides"][0]["needed_by_mounted_apps"] == [
        {"app": sub["id"], "mount_path": "/v2", "used_by": ["GET /v2/items (db)"]}
    ]
    get_db = f"db.py:{line(project / 'db.py', 'def get_db')}"
    assert document["problems"] == [
        {
            "code": "OVERRIDE_NOT_VISIBLE",
            "message": (
                f"the override of db:get_db (defined at {get_db}; held as app.get_db, "
                f"db.get_db) on 'Parent' ({parent['id']}) does not apply to GET /v2/items (db), "
                f"served by the app 'V2' ({sub['id']}) mounted at /v2: a mounted app is its own "
                "overrides provider, overrides on the parent do not apply"
            ),
            "hint": (
                "Register the override on the mounted app as well: "
                "<mounted app>.dependency_overrides[db:get_db] = ..."
            ),
        }
    ]
    status, out, _ = doctor(capsys, "app:app")
    assert "  mount /v2: own overrides provider: overrides on the parent do not apply" in out
    assert "  mount /static: starlette.applications:Starlette (not a FastAPI app)" in out
    assert f"UNUSED here, needed by mounted {sub['id']} at /v2: GET /v2/items (db)" in out


def test_lookalike_key_from_a_reload(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An override keyed on the function of a reloaded module names both objects."""
    write(
        project,
        db=DB,
        app="""\
        import importlib

        from fastapi import Depends, FastAPI

        import db
        from db import get_db

        app = FastAPI(title="Reloaded")


        @app.get("/items")
        def items(session=Depends(get_db)):
            return []


        importlib.reload(db)  # what a settings-reloading conftest does
        app.dependency_overrides[db.get_db] = lambda: None
        """,
    )
    status, document = doctor_json(capsys, "app:app")
    assert status == 1
    site = f"db.py:{line(project / 'db.py', 'def get_db')}"
    reason = (
        "same module and qualname (db:get_db), defined again in the same module "
        "(importlib.reload does that)"
    )
    assert document["app"]["overrides"][0]["lookalikes"] == [
        {
            "callable": "db:get_db",
            "site": site,
            "reason": reason,
            "used_by": ["GET /items (session)"],
        }
    ]
    assert codes(document) == ["OVERRIDE_IDENTITY_MISMATCH"]
    assert document["problems"][0]["message"] == (
        f"the override key db:get_db (defined at {site}; held as db.get_db) on 'Reloaded' "
        f"({document['app']['id']}) is used by no route, but it looks like db:get_db (defined "
        f"at {site}; held as app.get_db) used by GET /items (session): {reason}; FastAPI finds "
        "overrides by identity, so that dependency is not overridden"
    )


def test_lookalike_key_from_a_wrapper(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A functools.wraps copy of the dependency used as the key is a lookalike."""
    write(
        project,
        db=DB,
        app="""\
        import functools

        from fastapi import Depends, FastAPI

        from db import get_db


        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                return fn(*args, **kwargs)

            return wrapper


        app = FastAPI(title="Wrapped")


        @app.get("/items")
        def items(session=Depends(get_db)):
            return []


        app.dependency_overrides[logged(get_db)] = lambda: None
        """,
    )
    status, document = doctor_json(capsys, "app:app")
    assert status == 1
    wrapper = f"app.py:{line(project / 'app.py', '@functools.wraps')}"
    original = f"db.py:{line(project / 'db.py', 'def get_db')}"
    [alike] = document["app"]["overrides"][0]["lookalikes"]
    assert (
        alike["reason"] == f"db:get_db ({wrapper}) wraps db:get_db ({original}) (functools.wraps)"
    )
    assert codes(document) == ["OVERRIDE_IDENTITY_MISMATCH"]


def test_unused_override(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An override no route uses and nothing resembles is OVERRIDE_UNUSED."""
    write(
        project,
        db=DB,
        app="""\
        from fastapi import Depends, FastAPI

        from db import get_db, get_settings

        app = FastAPI(title="Unused")


        @app.get("/items")
        def items(session=Depends(get_db)):
            return []


        app.dependency_overrides[get_settings] = lambda: {}
        """,
    )
    status, document = doctor_json(capsys, "app:app")
    assert status == 1
    site = f"db.py:{line(project / 'db.py', 'def get_settings')}"
    assert document["problems"] == [
        {
            "code": "OVERRIDE_UNUSED",
            "message": (
                f"the override of db:get_settings (defined at {site}; held as "
                f"app.get_settings, db.get_settings) on 'Unused' ({document['app']['id']}) is "
                "used by no route of that app"
            ),
            "hint": (
                "Remove it, or key it on the dependency object a route of this app declares "
                "in Depends(...)."
            ),
        }
    ]


def test_override_used_only_by_an_override(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key needed only by an override's own Depends is used: FastAPI solves the override's tree."""
    write(
        project,
        db=DB,
        app="""\
        from fastapi import Depends, FastAPI

        from db import get_db, get_settings

        app = FastAPI(title="Nested")


        @app.get("/items")
        def items(session=Depends(get_db)):
            return []


        def fake_db(settings=Depends(get_settings)):
            yield None


        app.dependency_overrides[get_db] = fake_db
        app.dependency_overrides[get_settings] = lambda: {}
        """,
    )
    status, document = doctor_json(capsys, "app:app")
    assert (status, document["problems"]) == (0, [])
    assert [entry["used_by"] for entry in document["app"]["overrides"]] == [
        ["GET /items (session)"],
        ["GET /items (settings)"],
    ]


def test_override_on_a_second_app_instance(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An override registered on another create_app() result is not visible to the target."""
    write(
        project,
        db=DB,
        app="""\
        from fastapi import Depends, FastAPI

        from db import get_db


        def create_app():
            app = FastAPI(title="Made")

            @app.get("/items")
            def items(session=Depends(get_db)):
                return []

            return app


        app = create_app()
        other = create_app()
        other.dependency_overrides[get_db] = lambda: None
        """,
    )
    status, document = doctor_json(capsys, "app:app")
    assert status == 1
    created = f"app.py:{line(project / 'app.py', 'FastAPI(')}"
    [other] = document["other_apps"]
    assert other["created_at"] == created
    assert other["overrides"][0]["needed_by_target"] == ["GET /items (session)"]
    assert codes(document) == ["OVERRIDE_NOT_VISIBLE"]
    assert document["problems"][0]["message"] == (
        f"the override of db:get_db (defined at db.py:{line(project / 'db.py', 'def get_db')}; "
        f"held as app.get_db, db.get_db) is registered on another app 'Made' ({other['id']}, "
        f"created at {created}), not on the app that serves GET /items (session)"
    )


def test_module_engine_on_a_production_sqlite_file(
    project: Path,
    prod_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A module-level engine on prod.db is listed with its URL and site, and flagged."""
    prod = prod_dir / "prod.db"
    monkeypatch.setenv("APP_DATABASE_URL", f"sqlite:///{prod}")
    write(
        project,
        db=DB,
        app="""\
        import sqlalchemy
        from fastapi import Depends, FastAPI

        import db

        with db.engine.begin() as connection:  # import-time DDL, as many apps do
            connection.execute(sqlalchemy.text("CREATE TABLE IF NOT EXISTS item (id INTEGER)"))

        app = FastAPI(title="Prod")


        @app.get("/items")
        def items(session=Depends(db.get_db)):
            return []
        """,
    )
    status, out, err = doctor(capsys, "app:app")
    assert (status, err) == (1, "")
    assert prod.exists()  # the import really ran against that file
    created = f"db.py:{line(project / 'db.py', 'create_engine(os')}"
    assert out.splitlines()[-8:] == [
        f"engines (test database: {DEFAULT_RULE}):",
        f"  e1 sqlite:///{prod}  created at {created} during import  NOT a test database",
        "      reachable as app.connection, db.SessionLocal, db.engine",
        "      URL equals environment variable APP_DATABASE_URL",
        "",
        "problems (1):",
        f"  WRONG_DB: engine e1 (sqlite:///{prod}), created at {created} during import, "
        "reachable as app.connection, db.SessionLocal, db.engine, its URL is the value of APP_DATABASE_URL, is "
        f"not a test database by the rule: {DEFAULT_RULE}",
        "      fix: Build the engine from the test configuration (in a fixture, or from an "
        "environment variable the tests set before importing the app); if this is a test "
        "database, say so with --test-db or DEPSTRACE_TEST_DB.",
    ]
    for name in ("app", "db"):
        sys.modules.pop(name)
    status, document = doctor_json(capsys, "--test-db", "*prod.db", "app:app")
    assert (status, document["engines"][0]["is_test"], document["problems"]) == (0, True, [])
    assert document["test_db_rule"] == "--test-db patterns: *prod.db"


@pytest.mark.postgres
def test_password_never_printed(
    project: Path, postgres: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password in a PostgreSQL URL (engine and env var) reaches neither stdout nor stderr."""
    secret = "hunter2-Secret"
    url = postgres["psycopg_prod"].replace("postgres@", f"postgres:{secret}@")
    monkeypatch.setenv("APP_DATABASE_URL", url)
    write(
        project,
        db=DB,
        app="""\
        import sqlalchemy
        from fastapi import Depends, FastAPI

        import db

        with db.engine.connect() as connection:  # a real round trip at import time
            connection.execute(sqlalchemy.text("SELECT 1"))

        app = FastAPI(title="Postgres")


        @app.get("/items")
        def items(session=Depends(db.get_db)):
            return []
        """,
        broken="""\
        import os

        raise RuntimeError("cannot reach " + os.environ["APP_DATABASE_URL"])
        """,
    )
    outputs = []
    for argv in (["app:app"], ["--json", "app:app"], ["broken:app"]):
        result = subprocess.run(
            [sys.executable, "-m", "depstrace", "doctor", *argv],
            capture_output=True,
            text=True,
            check=False,
            env=os.environ | {"PYTHONPATH": os.getcwd()},
        )
        outputs.append((result.returncode, result.stdout, result.stderr))
    assert [status for status, _, _ in outputs] == [1, 1, 2]
    assert all(secret not in out + err for _, out, err in outputs)
    redacted = "postgresql+psycopg://postgres:***@127.0.0.1:5432/depstrace_prod"
    assert f"  e1 {redacted}  created at db.py:" in outputs[0][1]
    assert "      URL equals environment variable APP_DATABASE_URL" in outputs[0][1]
    assert json.loads(outputs[1][1])["engines"][0]["url"] == redacted
    assert outputs[2][2] == (
        f"depstrace doctor: cannot import broken: RuntimeError: cannot reach {redacted}\n"
    )


# --- usage errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nosuch:app"], "cannot import nosuch: ModuleNotFoundError: No module named 'nosuch'"),
        (["fine:nope"], "fine has no attribute nope"),
        (
            ["fine:VALUE"],
            "VALUE is not a FastAPI app: fine:VALUE is a builtins.int",
        ),
        (
            ["fine:make"],
            "make is not a FastAPI app: fine:make is a builtins.function (call it with "
            "--factory or write MODULE:APP())",
        ),
        (["fine:fail()"], "calling fine:fail() failed: ValueError: no app today"),
        (["fine"], "target must be MODULE:APP (e.g. app.main:app), got 'fine'"),
        (
            ["--test-db", "re:(", "fine:app"],
            "--test-db pattern 're:(' is not a valid regular expression: missing ), "
            "unterminated subpattern at position 0; write re:<python regex> or an fnmatch "
            "glob such as *test*",
        ),
    ],
)
def test_usage_errors(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Import and target errors exit 2 with one clear line on stderr."""
    write(
        project,
        fine="""\
        from fastapi import FastAPI

        VALUE = 3
        app = FastAPI()


        def make():
            return app


        def fail():
            raise ValueError("no app today")
        """,
    )
    assert doctor(capsys, *argv) == (2, "", f"depstrace doctor: {message}\n")


def test_module_whose_import_raises(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An exception inside the imported module is an import error, and tracing is undone."""
    write(project, bad="import missing_dependency_xyz\n")
    original_init = FastAPI.__init__
    assert doctor(capsys, "bad:app") == (
        2,
        "",
        "depstrace doctor: cannot import bad: ModuleNotFoundError: No module named "
        "'missing_dependency_xyz'\n",
    )
    assert FastAPI.__init__ is original_init  # the wrapper is gone


def test_app_wrapped_in_middleware(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An ASGI wrapper with an ``app`` attribute is looked through; prints go to stderr."""
    write(
        project,
        wrapped="""\
        from fastapi import FastAPI
        from starlette.middleware.cors import CORSMiddleware

        print("loading settings")
        inner = FastAPI(title="Inner")
        app = CORSMiddleware(inner, allow_origins=["*"])
        """,
    )
    status, out, err = doctor(capsys, "--json", "wrapped:app")
    assert (status, json.loads(out)["app"]["title"], err) == (0, "Inner", "loading settings\n")


# --- included routers (FastAPI >= 0.141 keeps them as _IncludedRouter) -----------------------

TIMING = """\
import functools


def timed(dependency):
    @functools.wraps(dependency)
    def wrapper():
        yield from dependency()

    return wrapper
"""

ROUTERS = """\
from fastapi import APIRouter, Depends, WebSocket

from db import get_db, get_settings
from timing import timed

timed_db = timed(get_db)


def require_user(settings=Depends(get_settings)):
    return "ada"


def audit():
    return None


items = APIRouter(prefix="/items", dependencies=[Depends(require_user)])


@items.get("/{item_id}")
def read_item(item_id: int, db=Depends(get_db)):
    return item_id


@items.websocket("/feed")
async def feed(websocket: WebSocket, db=Depends(get_db)):
    await websocket.close()


reports = APIRouter()


@reports.get("/reports")
def list_reports(db=Depends(timed_db)):
    return []


admin = APIRouter()
admin.include_router(items, prefix="/admin")
admin.include_router(reports)
"""

INCLUDING_APP = """\
from fastapi import APIRouter, Depends, FastAPI

from db import get_db
from routers import admin, audit, items


def fake_db():
    yield None


app = FastAPI(title="Shop")
api = APIRouter(prefix="/api")
api.include_router(admin, prefix="/v1", dependencies=[Depends(audit)])
app.include_router(api)
app.include_router(items, prefix="/public")
app.dependency_overrides[get_db] = fake_db
"""


def test_included_routers_text(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nested, prefixed routers with router-level dependencies are walked on every FastAPI
    version: full paths, complete trees, the override used, the wrapper route reported."""
    write(project, db=DB, timing=TIMING, routers=ROUTERS, app=INCLUDING_APP)
    app_py, db_py, routers_py = project / "app.py", project / "db.py", project / "routers.py"
    timing_py = project / "timing.py"
    status, out, err = doctor(capsys, "app:app")
    assert (status, err) == (1, "")
    get_db = f"db.py:{line(db_py, 'def get_db')}"
    wrapper = f"timing.py:{line(timing_py, '@functools.wraps')}"
    audit = f"      audit: routers:audit  routers.py:{line(routers_py, 'def audit')}"
    user = [
        f"      require_user: routers:require_user  routers.py:{line(routers_py, 'def require_user')}",
        f"        settings: db:get_settings  db.py:{line(db_py, 'def get_settings')}",
    ]
    overridden = f"      db: db:get_db  {get_db}  -> override app:fake_db (app.py:{line(app_py, 'def fake_db')})"
    read_item = f"routers:read_item  routers.py:{line(routers_py, '@items.get')}"
    feed = f"routers:feed  routers.py:{line(routers_py, '@items.websocket')}"
    uses = (
        "GET /api/v1/admin/items/{item_id} (db), WEBSOCKET /api/v1/admin/items/feed (db), "
        "GET /public/items/{item_id} (db), WEBSOCKET /public/items/feed (db)"
    )
    timed_db = f"routers.timed_db (defined at {wrapper}, wraps db:get_db at {get_db})"
    reason = f"db:get_db ({wrapper}) wraps db:get_db ({get_db}) (functools.wraps)"
    lines = out.splitlines()
    engines = lines.index(f"engines (test database: {DEFAULT_RULE}):")
    assert lines[: engines + 1] == [
        "depstrace doctor app:app",
        "",
        f"app 'Shop' (app{_app_number(out)}), created at app.py:{line(app_py, 'FastAPI(')} during import",
        "  routes:",
        f"    GET /api/v1/admin/items/{{item_id}}  {read_item}",
        audit,
        *user,
        overridden,
        f"    WEBSOCKET /api/v1/admin/items/feed  {feed}",
        audit,
        *user,
        overridden,
        f"    GET /api/v1/reports  routers:list_reports  routers.py:{line(routers_py, '@reports.get')}",
        audit,
        f"      db: {timed_db}",
        f"      ! db: {timed_db} looks like db:get_db ({get_db}), used by {uses} and an override "
        f"key of this app: {reason}; an override keyed on one does not reach the other",
        f"    GET /public/items/{{item_id}}  {read_item}",
        *user,
        overridden,
        f"    WEBSOCKET /public/items/feed  {feed}",
        *user,
        overridden,
        "  overrides:",
        f"    db:get_db ({get_db}) -> app:fake_db (app.py:{line(app_py, 'def fake_db')}): used by {uses}",
        "",
        f"engines (test database: {DEFAULT_RULE}):",
    ]
    assert lines[lines.index("problems (1):") :] == [
        "problems (1):",
        f"  OVERRIDE_IDENTITY_MISMATCH: the override of db:get_db (defined at {get_db}; held as "
        f"app.get_db, db.get_db, routers.get_db) on 'Shop' (app{_app_number(out)}) serves {uses}, "
        f"but it looks like db:get_db (defined at {wrapper}; held as routers.timed_db) used by "
        f"GET /api/v1/reports (db): {reason}; FastAPI finds overrides by identity, so that "
        "dependency is not overridden",
        f"      fix: Key the override on the very object the route uses: import {timed_db} from "
        "the module the route imports it from, and do not reload that module or re-create the "
        "dependency between the override and the request.",
    ]


def test_included_routers_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json: every included route with its full path, its dependency names in solve order,
    the working override used by all four, and the wrapper route's lookalike entry."""
    write(project, db=DB, timing=TIMING, routers=ROUTERS, app=INCLUDING_APP)
    status, document = doctor_json(capsys, "app:app")
    assert status == 1

    def names(nodes: list[dict[str, Any]]) -> list[Any]:
        return [(n["name"], n["override"] is not None, names(n["dependencies"])) for n in nodes]

    user = ("require_user", False, [("settings", False, [])])
    db = ("db", True, [])
    assert [
        (r["kind"], r["methods"], r["path"], names(r["dependencies"]))
        for r in document["app"]["routes"]
    ] == [
        ("http", ["GET"], "/api/v1/admin/items/{item_id}", [("audit", False, []), user, db]),
        ("websocket", [], "/api/v1/admin/items/feed", [("audit", False, []), user, db]),
        ("http", ["GET"], "/api/v1/reports", [("audit", False, []), ("db", False, [])]),
        ("http", ["GET"], "/public/items/{item_id}", [user, db]),
        ("websocket", [], "/public/items/feed", [user, db]),
    ]
    [override] = document["app"]["overrides"]
    assert override["used_by"] == [
        "GET /api/v1/admin/items/{item_id} (db)",
        "WEBSOCKET /api/v1/admin/items/feed (db)",
        "GET /public/items/{item_id} (db)",
        "WEBSOCKET /public/items/feed (db)",
    ]
    get_db = f"db.py:{line(project / 'db.py', 'def get_db')}"
    wrapper = f"timing.py:{line(project / 'timing.py', '@functools.wraps')}"
    reports = document["app"]["routes"][2]
    assert reports["dependencies"][1] == {
        "name": "db",
        "callable": "db:get_db",
        "site": wrapper,
        "alias": {"ref": "routers.timed_db", "wraps": "db:get_db", "wraps_site": get_db},
        "override": None,
        "dependencies": [],
    }
    assert reports["lookalikes"] == [
        {
            "dependency": "db",
            "callable": f"routers.timed_db (defined at {wrapper}, wraps db:get_db at {get_db})",
            "looks_like": "db:get_db",
            "looks_like_site": get_db,
            "used_by": override["used_by"],
            "override_key": True,
            "reason": f"db:get_db ({wrapper}) wraps db:get_db ({get_db}) (functools.wraps)",
        }
    ]
    assert [r["lookalikes"] for r in document["app"]["routes"] if r is not reports] == [[]] * 4
    assert document["app"]["unexamined_routes"] == []


def test_route_using_a_wrapper_without_any_override(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no override yet, the route using a wrapper of what other routes use is reported
    per route (the one fewer routes use), and that alone is not a problem."""
    write(
        project,
        db=DB,
        timing=TIMING,
        app="""\
        from fastapi import APIRouter, Depends, FastAPI

        from db import get_db
        from timing import timed

        router = APIRouter(prefix="/shop")


        @router.get("/items")
        def items(db=Depends(get_db)):
            return []


        @router.get("/orders")
        def orders(db=Depends(get_db)):
            return []


        @router.get("/stats")
        def stats(session=Depends(timed(get_db))):
            return {}


        app = FastAPI(title="Plain")
        app.include_router(router)
        """,
    )
    status, out, _ = doctor(capsys, "app:app")
    assert status == 0
    get_db = f"db.py:{line(project / 'db.py', 'def get_db')}"
    wrapper = f"timing.py:{line(project / 'timing.py', '@functools.wraps')}"
    flagged = [row for row in out.splitlines() if row.lstrip().startswith("!")]
    # timed(get_db) is created inline in Depends(...): no global holds it, so it keeps
    # the name it carries, with its own site and what it wraps.
    inline = f"db:get_db (defined at {wrapper}, wraps db:get_db at {get_db})"
    assert f"      session: {inline}" in out.splitlines()
    assert flagged == [
        f"      ! session: {inline} looks like db:get_db ({get_db}), used by "
        "GET /shop/items (db), GET /shop/orders (db): "
        f"db:get_db ({wrapper}) wraps db:get_db ({get_db}) (functools.wraps); "
        "an override keyed on one does not reach the other"
    ]
    assert out.splitlines()[out.splitlines().index(flagged[0]) - 2].startswith(
        "    GET /shop/stats  app:stats"
    )


def test_reloaded_dependency_used_by_one_route(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A route holding the pre-reload function while the override (used elsewhere) is keyed
    on the new one is named by the global that holds it and made a problem."""
    write(
        project,
        db=DB,
        legacy="""\
        from fastapi import APIRouter, Depends

        from db import get_db

        router = APIRouter()


        @router.get("/legacy")
        def legacy(db=Depends(get_db)):
            return []
        """,
        app="""\
        import importlib

        from fastapi import Depends, FastAPI

        import db
        from legacy import router

        importlib.reload(db)  # what a settings-reloading conftest does

        app = FastAPI(title="Reloaded")
        app.include_router(router, prefix="/v1")


        @app.get("/items")
        def items(session=Depends(db.get_db)):
            return []


        app.dependency_overrides[db.get_db] = lambda: None
        """,
    )
    status, document = doctor_json(capsys, "app:app")
    assert status == 1
    site = f"db.py:{line(project / 'db.py', 'def get_db')}"
    legacy = document["app"]["routes"][0]
    assert (legacy["path"], legacy["dependencies"][0]["alias"]) == (
        "/v1/legacy",
        {"ref": "legacy.get_db", "wraps": None, "wraps_site": None},
    )
    reason = (
        "same module and qualname (db:get_db), defined again in the same module "
        "(importlib.reload does that)"
    )
    assert legacy["lookalikes"] == [
        {
            "dependency": "db",
            "callable": f"legacy.get_db (db:get_db at {site})",
            "looks_like": "db:get_db",
            "looks_like_site": site,
            "used_by": ["GET /items (session)"],
            "override_key": True,
            "reason": reason,
        }
    ]
    assert codes(document) == ["OVERRIDE_IDENTITY_MISMATCH"]
    assert document["problems"][0]["message"].startswith(
        f"the override of db:get_db (defined at {site}; held as db.get_db) on 'Reloaded' "
        f"({document['app']['id']}) serves GET /items (session), but it looks like db:get_db "
        f"(defined at {site}; held as legacy.get_db) used by GET /v1/legacy (db): {reason}"
    )


def test_route_type_it_cannot_enter_makes_no_override_unused(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Host route is listed as not examined, and the override its app may use is not
    called unused (no advice to remove a working override)."""
    write(
        project,
        db=DB,
        app="""\
        from fastapi import Depends, FastAPI

        from db import get_db

        api = FastAPI(title="API")


        @api.get("/items")
        def items(db=Depends(get_db)):
            return []


        app = FastAPI(title="Hosts")
        app.host("api.example.com", api)
        app.dependency_overrides[get_db] = lambda: None
        """,
    )
    status, document = doctor_json(capsys, "app:app")
    assert (status, document["problems"]) == (0, [])
    assert document["app"]["unexamined_routes"] == ["starlette.routing:Host"]
    assert document["app"]["overrides"][0]["unknown_routes"] == ["starlette.routing:Host"]
    status, out, _ = doctor(capsys, "app:app")
    assert "    ? starlette.routing:Host: a route type depstrace cannot look into" in out
    assert ": not used by the routes examined; starlette.routing:Host could not be examined" in out
