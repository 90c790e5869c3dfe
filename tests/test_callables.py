"""Tests for depstrace._callables: names and sites that point at the object itself.

Modules are written to disk and imported for real, decorated with the real
``functools`` / ``contextlib`` decorators, so sites, ``__wrapped__`` chains and
module globals are exactly what a user's app has.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest

from depstrace import _callables
from depstrace._callables import CallableInfo, describe, ref_in, shorten_path

Loader = Callable[[str, str], ModuleType]

DB = """\
import contextlib
import functools


def get_db():
    yield "db"


@contextlib.contextmanager
def session_scope():
    yield "session"


@contextlib.asynccontextmanager
async def connection():
    yield "connection"


@contextlib.contextmanager
def traced():
    yield


@traced()
def get_engine():
    return "engine"


@contextlib.asynccontextmanager
async def async_traced():
    yield


@async_traced()
async def get_client():
    return "client"


@functools.lru_cache
def get_settings():
    return {"debug": False}


read_only_db = functools.partial(get_db)


class Checker:
    def __call__(self):
        return True
"""

TIMING = """\
import functools


def timed(dependency):
    @functools.wraps(dependency)
    def wrapper():
        yield from dependency()

    return wrapper
"""

DEPS = """\
import functools

import nm_db
from nm_timing import timed


@functools.wraps(nm_db.get_db)
def get_db():
    yield from nm_db.get_db()


@timed
def get_items():
    yield []
"""

ROUTES = """\
import nm_db
from nm_db import Checker, get_db
from nm_timing import timed

timed_db = timed(get_db)
checker = Checker()


def endpoint():
    return None
"""


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loader]:
    """Write ``name.py`` under tmp_path and import it for real; forget it after."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def loader(name: str, source: str) -> ModuleType:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return importlib.import_module(name)

    yield loader
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    _callables.clear_cache()


def site(module: ModuleType, text: str) -> str:
    """``file:line`` of the first line containing ``text`` in the module."""
    lines = Path(module.__file__ or "").read_text().splitlines()
    number = next(n for n, line in enumerate(lines, 1) if text in line)
    return f"{shorten_path(module.__file__ or '')}:{number}"


@pytest.fixture
def modules(load: Loader) -> dict[str, ModuleType]:
    """The four modules above, imported in dependency order."""
    return {
        "db": load("nm_db", DB),
        "timing": load("nm_timing", TIMING),
        "deps": load("nm_deps", DEPS),
        "routes": load("nm_routes", ROUTES),
    }


def test_plain_function_is_named_by_its_own_name(modules: dict[str, ModuleType]) -> None:
    """A plain function's module:qualname finds it: exact, ref is that path, nothing wrapped."""
    db = modules["db"]
    assert describe(db.get_db) == CallableInfo(
        qualname="nm_db:get_db",
        site=site(db, "def get_db"),
        kind="generator",
        callable_type="function",
        exact=True,
        ref="nm_db.get_db",
        wraps=None,
        wraps_site=None,
        home="nm_db",
    )


def test_wraps_wrapper_held_by_the_route_module(modules: dict[str, ModuleType]) -> None:
    """timed(get_db) carries get_db's name; its ref comes from the module that wrote Depends."""
    db, timing, routes = modules["db"], modules["timing"], modules["routes"]
    info = describe(routes.timed_db)
    assert info == CallableInfo(
        qualname="nm_db:get_db",
        site=site(timing, "@functools.wraps"),
        kind="generator",
        callable_type="function",
        exact=False,
        ref=None,
        wraps="nm_db:get_db",
        wraps_site=site(db, "def get_db"),
        home="nm_timing",
    )
    assert ref_in(routes.timed_db, info, "nm_routes") == "nm_routes.timed_db"
    assert ref_in(routes.timed_db, info, "nm_timing") is None  # no global there holds it
    assert ref_in(routes.timed_db, info, None) is None


def test_inline_wraps_wrapper_is_named_by_its_own_module(modules: dict[str, ModuleType]) -> None:
    """An inline @functools.wraps(db.get_db) def get_db in deps is deps.get_db, defined in deps."""
    db, deps = modules["db"], modules["deps"]
    info = describe(deps.get_db)
    assert (info.qualname, info.exact, info.ref, info.site) == (
        "nm_db:get_db",
        False,
        "nm_deps.get_db",
        site(deps, "@functools.wraps(nm_db.get_db)"),
    )
    assert (info.wraps, info.wraps_site, info.home) == (
        "nm_db:get_db",
        site(db, "def get_db"),
        "nm_deps",
    )


def test_decorator_applied_in_place_keeps_its_name(modules: dict[str, ModuleType]) -> None:
    """@timed def get_items: the name finds the wrapper; the site is the wrapper's user code."""
    deps, timing = modules["deps"], modules["timing"]
    info = describe(deps.get_items)
    assert (info.qualname, info.exact, info.ref) == ("nm_deps:get_items", True, "nm_deps.get_items")
    assert (info.site, info.wraps, info.wraps_site) == (
        site(timing, "@functools.wraps"),
        "nm_deps:get_items",
        site(deps, "@timed"),
    )


@pytest.mark.parametrize(
    ("attribute", "definition", "kind"),
    [
        ("session_scope", "def session_scope", "generator"),  # contextmanager's helper
        ("connection", "async def connection", "async_generator"),  # asynccontextmanager's
        ("get_engine", "def get_engine", "sync"),  # ContextDecorator's inner
        ("get_client", "async def get_client", "async"),  # AsyncContextDecorator's inner
        ("get_settings", "def get_settings", "sync"),  # functools.lru_cache (no code at all)
    ],
)
def test_library_decorators_resolve_to_the_users_file(
    modules: dict[str, ModuleType], attribute: str, definition: str, kind: str
) -> None:
    """Wrapper code in contextlib.py / functools resolves to the user's own function."""
    db = modules["db"]
    call = getattr(db, attribute)
    info = describe(call)
    decorator_line = site(db, definition).rsplit(":", 1)
    line = int(decorator_line[1]) - 1  # co_firstlineno of a decorated function is the decorator
    user_site = f"{decorator_line[0]}:{line}"
    assert (info.qualname, info.site, info.exact, info.ref, info.kind) == (
        f"nm_db:{attribute}",
        user_site,
        True,
        f"nm_db.{attribute}",
        kind,
    )
    assert (info.wraps, info.wraps_site, info.home) == (f"nm_db:{attribute}", user_site, "nm_db")


def test_partial_held_in_a_global(modules: dict[str, ModuleType]) -> None:
    """A partial is named by the global holding it and wraps its function."""
    db = modules["db"]
    info = describe(db.read_only_db)
    assert (info.qualname, info.callable_type, info.exact, info.ref) == (
        "nm_db:get_db",
        "partial",
        False,
        "nm_db.read_only_db",
    )
    assert (info.wraps, info.wraps_site) == ("nm_db:get_db", site(db, "def get_db"))


def test_instance_is_found_in_the_route_module_or_a_module_it_imported(
    modules: dict[str, ModuleType], load: Loader
) -> None:
    """A class-instance dependency gets the global that holds it, directly or as module.name."""
    routes = modules["routes"]
    info = describe(routes.checker)
    assert (info.qualname, info.exact, info.ref) == ("nm_db:Checker()", False, None)
    assert ref_in(routes.checker, info, "nm_routes") == "nm_routes.checker"
    load("nm_other", "import nm_routes\n")
    assert ref_in(routes.checker, info, "nm_other") == "nm_routes.checker"


def test_context_lookups_are_cached_per_callable_and_module(
    modules: dict[str, ModuleType],
) -> None:
    """The second lookup for one (callable, module) is remembered, not searched again."""
    routes = modules["routes"]
    wrapper = routes.timed_db
    info = describe(wrapper)
    assert ref_in(wrapper, info, "nm_routes") == "nm_routes.timed_db"
    del routes.timed_db  # a new search would now find nothing
    assert ref_in(wrapper, info, "nm_routes") == "nm_routes.timed_db"
    _callables.clear_cache()
    assert ref_in(wrapper, describe(wrapper), "nm_routes") is None


def test_mocks_and_builtins_never_raise(modules: dict[str, ModuleType]) -> None:
    """A mock answers any attribute, a builtin has no code: both are described without error."""
    info = describe(mock.Mock())
    assert (info.qualname, info.exact, info.wraps) == ("unittest.mock:Mock()", False, None)
    # Its fake __code__ is ignored; its class's real __call__ (library code) is the site.
    assert (info.site or "").rpartition(":")[0] == shorten_path(mock.__file__)
    assert describe(len) == CallableInfo(
        qualname="builtins:len",
        site=None,
        kind="sync",
        callable_type="function",
        exact=True,
        ref="builtins.len",
        home="builtins",
    )
