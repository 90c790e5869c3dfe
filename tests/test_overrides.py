"""The override ledger, end to end: pytest suites in a subprocess, real requests.

Each suite writes ``app.dependency_overrides`` one way (module-level code of a
lazily imported module, a test body, a fixture's teardown, ``update``,
``clear``, ``monkeypatch``, pytest-fastapi-deps, fastapi-overrider) and the
trace must hold exactly the override findings those writes deserve, each
naming the line that set the override.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

APP = """
from fastapi import Depends, FastAPI

def get_db():
    return "prod"

def get_settings():
    return "live"

def get_cache():  # no route depends on it
    return "cache"

app = FastAPI(title="shop")

@app.get("/items")
def items(db: str = Depends(get_db), settings: str = Depends(get_settings)) -> str:
    return f"{db}/{settings}"
"""

Found = list[tuple[str, str | None, str | None]]


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, **files: str) -> Any:
    """Run a suite (``app.py`` plus ``files``) traced; return (result, trace records)."""
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("DEPSTRACE_FILE", str(pytester.path / "trace.jsonl"))
    monkeypatch.delenv("DEPSTRACE_TEST_DB", raising=False)
    pytester.makepyfile(app=APP, **files)
    pytester.makeini("[pytest]\npythonpath = .\nfilterwarnings = ignore::DeprecationWarning\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    lines = (pytester.path / "trace.jsonl").read_text().splitlines()
    return result, [json.loads(line) for line in lines]


def findings(records: list[dict[str, Any]]) -> Found:
    """Every (code, test, path) of the trace, in order."""
    found: Found = []
    for record in records:
        if record["type"] == "request":
            found += [(f["code"], record["test"], record["path"]) for f in record["findings"]]
        elif record["type"] == "finding":
            found.append((record["code"], record.get("test"), None))
    return found


def messages(records: list[dict[str, Any]], code: str) -> list[str]:
    """The messages of every finding with ``code``."""
    found = [r for r in records if r["type"] == "finding" and r["code"] == code]
    for record in records:
        if record["type"] == "request":
            found += [f for f in record["findings"] if f["code"] == code]
    return [f["message"] for f in found]


def served(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(test name, response-shaping resolved callables) of every request, in order."""
    return [
        (r["test"].split("::")[1], ",".join(d["resolved"] for d in r["dependencies"]))
        for r in records
        if r["type"] == "request"
    ]


def test_module_level_override_imported_lazily_by_a_fixture_is_import_scope(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An override registered by module-level code belongs to the import, not to the
    test whose function fixture happened to import the module: no OVERRIDE_LEAKED."""
    pytester.mkpydir("tutorial")
    (pytester.path / "tutorial" / "overrides.py").write_text(
        "from app import app, get_db\n"
        "\n"
        "def tutorial_db():\n"
        "    return 'tutorial'\n"
        "\n"
        "app.dependency_overrides[get_db] = tutorial_db\n"
    )
    conftest = """
        import pytest
        from fastapi.testclient import TestClient
        from app import app

        @pytest.fixture
        def client():
            import tutorial.overrides  # the first test that asks imports it
            return TestClient(app)
    """
    tests = """
        def test_first(client):
            assert client.get("/items").json() == "tutorial/live"

        def test_second(client):
            assert client.get("/items").json() == "tutorial/live"
    """
    result, records = run(pytester, monkeypatch, conftest=conftest, test_tutorial=tests)
    result.assert_outcomes(passed=2)
    assert findings(records) == []
    assert served(records) == [
        ("test_first", "tutorial.overrides:tutorial_db,app:get_settings"),
        ("test_second", "tutorial.overrides:tutorial_db,app:get_settings"),
    ]


def test_override_set_used_and_popped_in_one_test_is_unused_at_its_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key no route uses, set, requested and popped inside one test body, is
    OVERRIDE_UNUSED naming that test and the line that set it."""
    tests = """
        from fastapi.testclient import TestClient
        from app import app, get_cache

        def test_cache_is_faked():
            app.dependency_overrides[get_cache] = lambda: "fake cache"
            assert TestClient(app).get("/items").json() == "prod/live"
            app.dependency_overrides.pop(get_cache)
    """
    result, records = run(pytester, monkeypatch, test_cache=tests)
    result.assert_outcomes(passed=1)
    assert findings(records) == [("OVERRIDE_UNUSED", "test_cache.py::test_cache_is_faked", None)]
    assert messages(records, "OVERRIDE_UNUSED") == [
        "the override app:get_cache -> test_cache:test_cache_is_faked.<locals>.<lambda> on "
        "app 'shop' [app1] set at test_cache.py:5 (key defined at app.py:9) was never "
        "consulted by any request of the run, although that app served requests: no route "
        "depends on that exact object"
    ]


def test_override_of_a_dependency_routes_use_is_not_unused_on_a_partial_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys that a route of an included router and a route of a mounted app depend on
    are not OVERRIDE_UNUSED when the selected test reached neither route; a key no
    route depends on still is."""
    extra = """
        from fastapi import APIRouter, Depends, FastAPI
        from app import app, get_cache, get_settings

        def get_unused():
            return 0

        router = APIRouter(prefix="/cache")

        @router.get("/")
        def cache(cache: str = Depends(get_cache)) -> str:
            return cache

        app.include_router(router)
        admin = FastAPI(title="admin")

        @admin.get("/settings")
        def settings(settings: str = Depends(get_settings)) -> str:
            return settings

        app.mount("/admin", admin)
    """
    conftest = """
        import pytest
        from app import app, get_cache, get_settings
        from extra import get_unused

        @pytest.fixture(autouse=True)
        def overrides():
            app.dependency_overrides[get_cache] = lambda: "fake cache"
            app.dependency_overrides[get_settings] = lambda: "test"
            app.dependency_overrides[get_unused] = lambda: 1
            yield
            app.dependency_overrides.clear()
    """
    tests = """
        from fastapi.testclient import TestClient
        from app import app

        def test_items():
            assert TestClient(app).get("/items").json() == "prod/test"
    """
    result, records = run(pytester, monkeypatch, extra=extra, conftest=conftest, test_it=tests)
    result.assert_outcomes(passed=1)
    assert findings(records) == [("OVERRIDE_UNUSED", "test_it.py::test_items", None)]
    assert [m.split(" on app")[0] for m in messages(records, "OVERRIDE_UNUSED")] == [
        "the override extra:get_unused -> conftest:overrides.<locals>.<lambda>"
    ]


def test_leak_across_two_tests_names_the_line_that_set_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An override a test body sets and never removes serves the next test's request:
    OVERRIDE_LEAKED on that request names the earlier test and its line."""
    tests = """
        from fastapi.testclient import TestClient
        from app import app, get_settings

        def test_maintenance():
            app.dependency_overrides[get_settings] = lambda: "maintenance"
            assert TestClient(app).get("/items").json() == "prod/maintenance"

        def test_items():
            assert TestClient(app).get("/items").json() == "prod/maintenance"
    """
    result, records = run(pytester, monkeypatch, test_order=tests)
    result.assert_outcomes(passed=2)
    assert findings(records) == [("OVERRIDE_LEAKED", "test_order.py::test_items", "/items")]
    assert messages(records, "OVERRIDE_LEAKED") == [
        "GET /items: dependency 'settings' (app:get_settings) was served by the override "
        "test_order:test_maintenance.<locals>.<lambda> that test "
        "test_order.py::test_maintenance registered at test_order.py:5 on app 'shop' [app1] "
        "and never removed; this request belongs to test_order.py::test_items, so its "
        "result depends on test order"
    ]


def test_reassignment_update_clear_and_monkeypatch_are_writes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``app.dependency_overrides = {}`` in a teardown, ``update``/``clear`` and
    ``monkeypatch.setitem`` over an import-time override are all seen: the dict a
    reassignment installs is tracked (a later leak in it names its line), what the
    update set unused names the fixture's line, and nothing else is reported."""
    conftest = """
        import pytest
        from fastapi.testclient import TestClient
        from app import app, get_cache, get_db

        def test_db():
            return "test"

        def fake_cache():
            return "fake"

        app.dependency_overrides[get_db] = test_db  # for the whole run

        @pytest.fixture
        def docs_client():
            app.dependency_overrides[get_db] = test_db
            yield TestClient(app)
            app.dependency_overrides = {}  # as FastAPI's docs recommend

        @pytest.fixture
        def update_client():
            app.dependency_overrides.update({get_db: test_db, get_cache: fake_cache})
            yield TestClient(app)
            app.dependency_overrides.clear()
    """
    tests = """
        from fastapi.testclient import TestClient
        from app import app, get_db, get_settings

        def test_monkeypatched(monkeypatch):
            monkeypatch.setitem(app.dependency_overrides, get_db, lambda: "patched")
            assert TestClient(app).get("/items").json() == "patched/live"

        def test_import_override_is_back():
            assert TestClient(app).get("/items").json() == "test/live"

        def test_docs_style(docs_client):
            assert docs_client.get("/items").json() == "test/live"

        def test_leaks_into_the_new_dict():
            app.dependency_overrides[get_settings] = lambda: "maintenance"

        def test_served_by_the_leak(update_client):
            assert update_client.get("/items").json() == "test/maintenance"

        def test_after_clear():
            assert TestClient(app).get("/items").json() == "prod/live"
    """
    result, records = run(pytester, monkeypatch, conftest=conftest, test_styles=tests)
    result.assert_outcomes(passed=6)
    assert findings(records) == [
        ("OVERRIDE_LEAKED", "test_styles.py::test_served_by_the_leak", "/items"),
        ("OVERRIDE_UNUSED", "test_styles.py::test_served_by_the_leak", None),
    ]
    assert messages(records, "OVERRIDE_LEAKED") == [
        "GET /items: dependency 'settings' (app:get_settings) was served by the override "
        "test_styles:test_leaks_into_the_new_dict.<locals>.<lambda> that test "
        "test_styles.py::test_leaks_into_the_new_dict registered at test_styles.py:15 on app "
        "'shop' [app1] and never removed; this request belongs to "
        "test_styles.py::test_served_by_the_leak, so its result depends on test order"
    ]
    assert messages(records, "OVERRIDE_UNUSED") == [
        "the override app:get_cache -> conftest:fake_cache on app 'shop' [app1] set at "
        "conftest.py:21 (key defined at app.py:9) was never consulted by any request of the "
        "run, although that app served requests: no route depends on that exact object"
    ]
    assert served(records)[:3] == [
        ("test_monkeypatched", "test_styles:test_monkeypatched.<locals>.<lambda>,app:get_settings"),
        ("test_import_override_is_back", "conftest:test_db,app:get_settings"),
        ("test_docs_style", "conftest:test_db,app:get_settings"),
    ]


def test_pytest_fastapi_deps_writes_name_the_with_statement(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overrides set through pytest-fastapi-deps' ``with fastapi_dep(app).override(...)``
    are seen at the test's ``with`` line (not the library's), removed when the context
    ends (no leak), and an unused key is reported at that line."""
    tests = """
        from fastapi.testclient import TestClient
        from app import app, get_cache, get_db

        def test_fastapi_deps(fastapi_dep):
            with fastapi_dep(app).override({get_db: lambda: "deps", get_cache: lambda: 0}):
                assert TestClient(app).get("/items").json() == "deps/live"

        def test_nothing_left():
            assert TestClient(app).get("/items").json() == "prod/live"
    """
    result, records = run(pytester, monkeypatch, test_deps=tests)
    result.assert_outcomes(passed=2)
    assert findings(records) == [("OVERRIDE_UNUSED", "test_deps.py::test_fastapi_deps", None)]
    assert messages(records, "OVERRIDE_UNUSED") == [
        "the override app:get_cache -> test_deps:test_fastapi_deps.<locals>.<lambda> on app "
        "'shop' [app1] set at test_deps.py:5 (key defined at app.py:9) was never consulted by "
        "any request of the run, although that app served requests: no route depends on that "
        "exact object"
    ]
    assert served(records) == [
        ("test_fastapi_deps", "test_deps:test_fastapi_deps.<locals>.<lambda>,app:get_settings"),
        ("test_nothing_left", "app:get_db,app:get_settings"),
    ]


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="fastapi-overrider 0.7.2 imports typing.Self (Python 3.11+) though it declares 3.10",
)
def test_fastapi_overrider_writes_name_the_users_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overrides set through fastapi-overrider's fixture (a copied dict swapped in by
    reassignment, then item writes through a UserDict) are seen at the test's line and
    gone when the fixture swaps the old dict back; a session-scoped overrider's
    override set in a test body leaks into the next test."""
    conftest = """
        import inspect

        import fastapi.dependencies.utils

        # fastapi-overrider 0.7.2 imports a helper newer FastAPI releases renamed.
        if not hasattr(fastapi.dependencies.utils, "is_coroutine_callable"):
            fastapi.dependencies.utils.is_coroutine_callable = inspect.iscoroutinefunction

        from fastapi_overrider import register_fixture

        from app import app

        override = register_fixture(app)
        lasting = register_fixture(app, name="lasting", scope="session")
    """
    tests = """
        from fastapi.testclient import TestClient
        from app import app, get_cache, get_db, get_settings

        def test_overrider(override):
            override(get_db, lambda: "overrider")
            override(get_cache, "unused value")
            assert TestClient(app).get("/items").json() == "overrider/live"

        def test_nothing_left():
            assert TestClient(app).get("/items").json() == "prod/live"

        def test_session_overrider(lasting):
            lasting(get_settings, lambda: "maintenance")

        def test_served_by_it():
            assert TestClient(app).get("/items").json() == "prod/maintenance"
    """
    result, records = run(pytester, monkeypatch, conftest=conftest, test_overrider=tests)
    result.assert_outcomes(passed=4)
    assert findings(records) == [
        ("OVERRIDE_LEAKED", "test_overrider.py::test_served_by_it", "/items"),
        ("OVERRIDE_UNUSED", "test_overrider.py::test_overrider", None),
    ]
    assert messages(records, "OVERRIDE_LEAKED") == [
        "GET /items: dependency 'settings' (app:get_settings) was served by the override "
        "test_overrider:test_session_overrider.<locals>.<lambda> that test "
        "test_overrider.py::test_session_overrider registered at test_overrider.py:13 on app "
        "'shop' [app1] and never removed; this request belongs to "
        "test_overrider.py::test_served_by_it, so its result depends on test order"
    ]
    assert messages(records, "OVERRIDE_UNUSED") == [
        # fastapi-overrider wraps the value in a function that functools.wraps the key
        "the override app:get_cache -> app:get_cache on app 'shop' [app1] set at "
        "test_overrider.py:6 (key defined at app.py:9) was never consulted by any request of "
        "the run, although that app served requests: no route depends on that exact object"
    ]


def test_not_visible_and_identity_mismatch_say_where_the_override_was_set(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An override on a mount parent and one keyed on a functools.wraps copy each
    name the fixture line that set them."""
    admin = """
        from fastapi import Depends, FastAPI
        from app import app, get_db

        admin = FastAPI(title="admin")

        @admin.get("/stats")
        def stats(db: str = Depends(get_db)) -> str:
            return db

        app.mount("/admin", admin)
    """
    conftest = """
        import functools
        import pytest
        from fastapi.testclient import TestClient
        import admin
        from app import app, get_db, get_settings

        @functools.wraps(get_settings)
        def settings_copy():
            return "copy"

        @pytest.fixture
        def client():
            app.dependency_overrides[get_db] = lambda: "test"
            app.dependency_overrides[settings_copy] = lambda: "maintenance"
            yield TestClient(app)
            app.dependency_overrides.clear()
    """
    tests = """
        def test_admin(client):
            assert client.get("/admin/stats").json() == "prod"

        def test_items(client):
            assert client.get("/items").json() == "test/live"
    """
    result, records = run(pytester, monkeypatch, admin=admin, conftest=conftest, test_app=tests)
    result.assert_outcomes(passed=2)
    assert findings(records) == [
        ("OVERRIDE_NOT_VISIBLE", "test_app.py::test_admin", "/admin/stats"),
        ("OVERRIDE_IDENTITY_MISMATCH", "test_app.py::test_items", "/items"),
        ("OVERRIDE_UNUSED", "test_app.py::test_admin", None),
    ]
    assert messages(records, "OVERRIDE_NOT_VISIBLE") == [
        "GET /admin/stats: dependency 'db' (app:get_db) ran unreplaced: app 'admin' [app2] "
        "served the request and consulted its own dependency_overrides, but the override "
        "conftest:client.<locals>.<lambda> is registered on 'shop' [app1], the parent app it "
        "is mounted in; the override was set at conftest.py:13"
    ]
    assert messages(records, "OVERRIDE_IDENTITY_MISMATCH") == [
        "GET /items: dependency 'settings' ran the original app:get_settings (app.py:6) "
        "although app 'shop' [app1] has an override, set at conftest.py:14, keyed on "
        "app:get_settings (conftest.py:7), another object: app:get_settings (conftest.py:7) "
        "wraps app:get_settings (app.py:6) (functools.wraps). FastAPI matches override keys "
        "by identity"
    ]
    assert messages(records, "OVERRIDE_UNUSED") == [
        "the override app:get_settings -> conftest:client.<locals>.<lambda> on app 'shop' "
        "[app1] set at conftest.py:14 (key defined at conftest.py:7) was never consulted by "
        "any request of the run, although that app served requests: no route depends on "
        "that exact object"
    ]
