"""Tests for depstrace._lookalike: why an override key looks like a used dependency.

Every lookalike here is made the way it happens in real suites: modules written
to disk and imported, reloaded with ``importlib.reload`` or imported a second
time under another name, decorated with real ``functools.wraps`` decorators.
"""

from __future__ import annotations

import functools
import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from depstrace import _lookalike
from depstrace._callables import shorten_path
from depstrace._lookalike import label, origin, why_alike

Loader = Callable[[str, str], ModuleType]

DEPS = """\
import functools


def get_db():
    return "db"


def get_settings():
    return "settings"


class Checker:
    def __init__(self, role):
        self.role = role

    def __call__(self):
        return self.role

    def check(self):
        return self.role


@functools.lru_cache
def cached_settings():
    return "settings"


def make_dep():
    def dep():
        return 1

    return dep


first = lambda: 1  # noqa: E731
second = lambda: 2  # noqa: E731
"""


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loader]:
    """Write ``name.py`` (dots make packages) under tmp_path and import it for real."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def loader(name: str, source: str) -> ModuleType:
        path = tmp_path.joinpath(*name.split("."))
        for parent in list(path.parents)[: name.count(".")]:
            parent.mkdir(exist_ok=True)
            (parent / "__init__.py").touch()
        path.with_suffix(".py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return importlib.import_module(name)

    yield loader
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    _lookalike.clear_cache()


def line_of(module: ModuleType, text: str) -> int:
    """The 1-based line of ``text`` in the module's source file."""
    lines = Path(module.__file__ or "").read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def site(module: ModuleType, text: str) -> str:
    """``file:line`` of ``text`` in the module, as depstrace prints sites."""
    return f"{shorten_path(module.__file__ or '')}:{line_of(module, text)}"


# --- reloads and second imports ----------------------------------------------------


def test_reloaded_function(load: Loader) -> None:
    """importlib.reload redefines the function in the same module object."""
    deps = load("lk_reload", DEPS)
    old = deps.get_db
    importlib.reload(deps)
    assert deps.get_db is not old
    assert why_alike(old, deps.get_db) == (
        "same module and qualname (lk_reload:get_db), defined again in the same module "
        "(importlib.reload does that)"
    )
    assert why_alike(deps.get_db, old) == why_alike(old, deps.get_db)


def test_second_import_after_sys_modules_removal(load: Loader) -> None:
    """Importing a module again after dropping it from sys.modules makes a new module."""
    first = load("lk_again", DEPS)
    del sys.modules["lk_again"]
    second = importlib.import_module("lk_again")
    assert second is not first
    assert why_alike(first.get_db, second.get_db) == (
        "same module and qualname (lk_again:get_db) from two module objects: "
        "a reloaded module or a second import"
    )


def test_same_file_under_two_module_names(load: Loader, tmp_path: Path) -> None:
    """One file imported as pkg.deps and as deps (two sys.path entries) shares its code site."""
    packaged = load("lkpkg.deps", DEPS)
    sys.path.insert(0, str(tmp_path / "lkpkg"))  # removed by monkeypatch's syspath restore
    plain = importlib.import_module("deps")
    assert plain is not packaged
    assert why_alike(packaged.get_db, plain.get_db) == (
        f"same code location ({site(packaged, 'def get_db')}), "
        "imported as lkpkg.deps:get_db and deps:get_db"
    )
    assert why_alike(plain.Checker, packaged.Checker) == (
        f"same class in the same file ({shorten_path(packaged.__file__ or '')}), "
        "imported as deps:Checker and lkpkg.deps:Checker"
    )


def test_reloaded_class(load: Loader) -> None:
    """A class from a reloaded module is another class with the same name."""
    deps = load("lk_class", DEPS)
    old = deps.Checker
    importlib.reload(deps)
    assert why_alike(old, deps.Checker) == (
        "same module and qualname (lk_class:Checker): a reloaded module or a second import"
    )


def test_closures_from_one_factory(load: Loader) -> None:
    """Two calls of a factory make two functions from one code object."""
    deps = load("lk_factory", DEPS)
    assert why_alike(deps.make_dep(), deps.make_dep()) == (
        "same module and qualname (lk_factory:make_dep.<locals>.dep) and the same code: "
        "two function objects made by one definition (a factory called twice?)"
    )


# --- functools.wraps ------------------------------------------------------------------

DECORATORS = """\
import functools


def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper
"""

DECORATED = """\
from lk_decorators import logged


@logged
def get_db():
    return "db"
"""


def test_key_wraps_the_used_dependency(load: Loader) -> None:
    """An override keyed on a decorated copy of the dependency names both sites."""
    deco = load("lk_decorators", DECORATORS)
    deps = load("lk_wrapped", DEPS)
    wrapped = deco.logged(deps.get_db)
    key_site = site(deco, "@functools.wraps")  # a decorated def starts at its decorator
    used_site = site(deps, "def get_db")
    assert why_alike(wrapped, deps.get_db) == (
        f"lk_wrapped:get_db ({key_site}) wraps lk_wrapped:get_db ({used_site}) (functools.wraps)"
    )
    assert why_alike(deps.get_db, wrapped) == (
        f"lk_wrapped:get_db ({key_site}) wraps lk_wrapped:get_db ({used_site}) (functools.wraps)"
    )


def test_both_wrap_one_function(load: Loader) -> None:
    """Two wrappers of one function are alike through what they wrap."""
    deco = load("lk_decorators", DECORATORS)
    deps = load("lk_twice", DEPS)
    assert why_alike(deco.logged(deps.get_db), deco.logged(deps.get_db)) == (
        "both wrap lk_twice:get_db"
    )


def test_decorated_function_of_a_reloaded_module(load: Loader) -> None:
    """Wrappers share the decorator's code; what they wrap tells the reload."""
    load("lk_decorators", DECORATORS)
    deps = load("lk_decorated", DECORATED)
    old = deps.get_db
    importlib.reload(deps)
    assert why_alike(old, deps.get_db) == (
        "both wrap lookalikes: same module and qualname (lk_decorated:get_db), defined "
        "again in the same module (importlib.reload does that)"
    )


def test_lru_cache_function_of_a_reloaded_module(load: Loader) -> None:
    """functools.lru_cache objects are instances that carry __wrapped__."""
    deps = load("lk_lru", DEPS)
    old = deps.cached_settings
    importlib.reload(deps)
    assert why_alike(old, deps.cached_settings) == (
        "both wrap lookalikes: same module and qualname (lk_lru:cached_settings), defined "
        "again in the same module (importlib.reload does that)"
    )


# --- instances, classes, partials, methods ----------------------------------------------

INSTANCES = """\
class Equal:
    def __init__(self, role):
        self.role = role

    def __call__(self):
        return self.role

    def __eq__(self, other):
        return isinstance(other, Equal) and other.role == self.role

    __hash__ = object.__hash__  # equal, yet a different dict key


class Slotted:
    __slots__ = ("role", "unset")

    def __init__(self, role):
        self.role = role

    def __call__(self):
        return self.role


class Angry:
    def __call__(self):
        return 1

    def __eq__(self, other):
        raise RuntimeError("no comparisons")

    __hash__ = object.__hash__

    def __getattr__(self, name):
        raise RuntimeError(name)
"""


def test_equal_instance(load: Loader) -> None:
    """An instance equal to the used one but hashing apart is an unused key."""
    mod = load("lk_equal", INSTANCES)
    key, used = mod.Equal("admin"), mod.Equal("admin")
    assert {key: 1}.get(used) is None  # what FastAPI's lookup sees
    assert why_alike(key, used) == "an equal instance of lk_equal:Equal"
    assert why_alike(mod.Equal("admin"), mod.Equal("user")) is None


def test_instance_with_the_same_attributes(load: Loader) -> None:
    """Depends(Checker("admin")) written twice makes two alike instances."""
    deps = load("lk_instances", DEPS)
    assert why_alike(deps.Checker("admin"), deps.Checker("admin")) == (
        "another instance of lk_instances:Checker with the same attributes"
    )
    assert why_alike(deps.Checker("admin"), deps.Checker("user")) is None


def test_slotted_instances(load: Loader) -> None:
    """Attributes held in __slots__ count, including ones never set."""
    mod = load("lk_slots", INSTANCES)
    assert why_alike(mod.Slotted("a"), mod.Slotted("a")) == (
        "another instance of lk_slots:Slotted with the same attributes"
    )
    assert why_alike(mod.Slotted("a"), mod.Slotted("b")) is None


def test_instance_of_a_reloaded_class(load: Loader) -> None:
    """An instance made before a reload resembles one made after it."""
    deps = load("lk_inst_reload", DEPS)
    old = deps.Checker("admin")
    importlib.reload(deps)
    assert why_alike(old, deps.Checker("admin")) == (
        "an instance with the same attributes of a lookalike class: same module and "
        "qualname (lk_inst_reload:Checker): a reloaded module or a second import"
    )
    assert why_alike(old, deps.Checker("user")) is None


def test_class_key_for_an_instance_dependency(load: Loader) -> None:
    """Overriding the class when the route depends on an instance of it (and back)."""
    deps = load("lk_cls_inst", DEPS)
    instance = deps.Checker("admin")
    assert why_alike(deps.Checker, instance) == (
        "the key is the class lk_cls_inst:Checker; the route uses an instance of it"
    )
    assert why_alike(instance, deps.Checker) == (
        "the key is an instance of lk_cls_inst:Checker; the route uses the class itself"
    )


def test_partials(load: Loader) -> None:
    """Equal partials of one function, and of lookalike functions, are alike."""
    deps = load("lk_partial", DEPS)
    old = deps.get_db
    assert why_alike(functools.partial(old, 1, x=2), functools.partial(old, 1, x=2)) == (
        "an equal functools.partial of lk_partial:get_db"
    )
    assert why_alike(functools.partial(old, 1), functools.partial(old, 2)) is None
    importlib.reload(deps)
    assert why_alike(functools.partial(old, x=1), functools.partial(deps.get_db, x=1)) == (
        "functools.partial objects with equal arguments of lookalike callables: same module "
        "and qualname (lk_partial:get_db), defined again in the same module (importlib.reload "
        "does that)"
    )
    assert why_alike(functools.partial(old), functools.partial(deps.get_settings)) is None


def test_bound_methods_of_alike_instances(load: Loader) -> None:
    """Depends(Checker("a").check) twice: same function, alike instances."""
    deps = load("lk_methods", DEPS)
    assert why_alike(deps.Checker("a").check, deps.Checker("a").check) == (
        "bound method lk_methods:Checker.check of another instance of lk_methods:Checker "
        "with the same attributes"
    )
    assert why_alike(deps.Checker("a").check, deps.Checker("b").check) is None


# --- negatives and robustness ------------------------------------------------------------


def test_unrelated_objects_are_not_alike(load: Loader) -> None:
    """Different functions, same names in other modules and files, lambdas: no lookalike."""
    a = load("lk_neg_a", DEPS)
    b = load("lk_neg_b", DEPS)
    pairs: list[tuple[Any, Any]] = [
        (a.get_db, a.get_settings),
        (a.get_db, b.get_db),  # same name, another module and file
        (a.Checker, b.Checker),
        (a.Checker("x"), b.Checker("x")),  # alike attributes, unrelated classes
        (a.first, a.second),  # "<lambda>" twice in one module
        (a.get_db, a.Checker),
        (a.get_db, a.Checker("x")),
        (functools.partial(a.get_db), a.get_db),
        (1, 1.0),
        ("get_db", a.get_db),
        (None, a.get_db),
    ]
    assert [why_alike(key, used) for key, used in pairs] == [None] * len(pairs)


def test_identical_object_is_not_a_lookalike(load: Loader) -> None:
    """The very object a route uses is the override, not a lookalike of it."""
    deps = load("lk_same", DEPS)
    assert why_alike(deps.get_db, deps.get_db) is None


def test_never_raises(load: Loader) -> None:
    """Objects whose __eq__ and __getattr__ raise give no answer instead of an error."""
    mod = load("lk_angry", INSTANCES)
    assert why_alike(mod.Angry(), mod.Angry()) == (
        "another instance of lk_angry:Angry with the same attributes"
    )
    assert why_alike(mod.Angry(), mod.Equal("a")) is None
    assert (
        why_alike(functools.partial(len, mod.Angry()), functools.partial(len, mod.Angry())) is None
    )
    assert (
        why_alike(functools.partial(len, x=mod.Angry()), functools.partial(len, x=mod.Angry()))
        is None
    )


def test_answers_are_cached_per_pair(load: Loader) -> None:
    """The second question about one pair runs no user code (one dict lookup)."""
    mod = load("lk_cached", INSTANCES)
    calls: list[str] = []

    class Counting(mod.Equal):  # type: ignore[misc, name-defined]
        def __eq__(self, other: object) -> bool:
            calls.append("eq")
            return super().__eq__(other)  # type: ignore[no-any-return]

        __hash__ = object.__hash__

    key, used = Counting("a"), Counting("a")
    first = why_alike(key, used)
    assert first is not None
    assert first.startswith("an equal instance of ")
    assert calls == ["eq"]
    assert why_alike(key, used) == first
    assert calls == ["eq"]
    _lookalike.clear_cache()
    assert why_alike(key, used) == first
    assert calls == ["eq", "eq"]


def test_origin_and_label(load: Loader) -> None:
    """origin() is where each object was defined; label() its module:qualname."""
    deps = load("lk_origin", DEPS)
    assert origin(deps.get_db) == site(deps, "def get_db")
    assert origin(deps.Checker) == site(deps, "class Checker")
    assert origin(deps.Checker("a")) == site(deps, "def __call__")
    assert origin(functools.partial(deps.get_db, 1)) == site(deps, "def get_db")
    assert origin(len) is None
    assert origin(42) is None
    assert [label(deps.get_db), label(deps.Checker), label(deps.Checker("a"))] == [
        "lk_origin:get_db",
        "lk_origin:Checker",
        "lk_origin:Checker()",
    ]
