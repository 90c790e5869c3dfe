"""Order effects: what a request used that came into being during an *earlier* test.

"Passes alone, fails in the suite" nearly always means a test got something an
earlier test made: an engine an ``lru_cache``-d factory built while another
test had leaked ``DATABASE_URL``, a settings object cached while another test's
environment was in place, an override never removed.  Run alone, the test
builds its own.

What is needed is recorded once, where the object is made: engines carry their
creation test and fixture (:mod:`depstrace.sqlalchemy`), override entries the
test that leaked them (:mod:`depstrace._overrides`), and pydantic
``BaseSettings`` instances are noted here when they are initialised
(:func:`install`, one frame walk per instance).  Closing a request compares
those with the request's own test (:func:`order_effects`): a few attribute
reads per database and dependency, nothing per statement.

Something made by a session-, package-, module- or class-scoped fixture is no
order effect: run alone, the test sets that fixture up too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple
from weakref import ref as weak_ref

from depstrace._context import test_phase
from depstrace._failopen import report_internal_error
from depstrace._sites import caller_site, library_dir

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry
    from depstrace._records import DependencyNode, RequestRecord

__all__ = ["Birth", "birth_of", "describe", "install", "order_effects", "test_of", "uninstall"]

# Fixture scopes whose objects a test run alone would set up as well.
_SHARED_SCOPES = frozenset({"session", "package", "module", "class"})


class Birth(NamedTuple):
    """Where and during which test an object was made."""

    kind: str  # "settings"
    object: str  # module:qualname of its class
    test: str | None  # the test it was made in (None: import time, or a shared fixture)
    phase: str
    site: str | None


def test_of(nodeid: str | None, fixture: dict[str, Any] | None) -> str | None:
    """The test an object made now belongs to: the running test (its body or a
    function-scoped fixture), None outside tests and in shared-scope fixtures."""
    if fixture is not None and fixture.get("scope") in _SHARED_SCOPES:
        return None
    return nodeid


# id(object) -> (weak reference, birth); few objects (settings instances).
_births: dict[int, tuple[weak_ref[Any], Birth]] = {}


def note_birth(obj: Any, kind: str, skip: tuple[str, ...] = ()) -> None:
    """Remember where ``obj`` was made, while it lives (objects that take no weak
    reference are not remembered: keeping them alive would change the program)."""
    key = id(obj)

    def forget(_: object, key: int = key) -> None:
        _births.pop(key, None)

    try:
        ref = weak_ref(obj, forget)
    except TypeError:
        return
    running = test_phase()
    site, phase = caller_site(skip)
    kind_of = type(obj)
    _births[key] = (
        ref,
        Birth(
            kind,
            f"{kind_of.__module__}:{kind_of.__qualname__}",
            test_of(running.nodeid, running.fixture),
            phase,
            site,
        ),
    )


def birth_of(value: Any) -> Birth | None:
    """The birth of ``value`` if it is a noted object (one dict lookup)."""
    if not _births:
        return None
    hit = _births.get(id(value))
    return hit[1] if hit is not None and hit[0]() is value else None


def settings_holding(url: Any) -> Birth | None:
    """The newest noted settings object one of whose fields is the URL ``url`` (a
    SQLAlchemy URL): where an engine built from ``get_settings().database_url``
    got its URL.  Once per engine; nothing to do while no settings object lives."""
    if not _births:
        return None
    try:
        return _holding(url)
    except Exception:  # fail open: the engine is recorded without it
        report_internal_error("settings probe (engine URL)")
        return None


def _holding(url: Any) -> Birth | None:
    from sqlalchemy.engine import make_url

    birth: Birth  # (mypy reads the loop target as Any otherwise)
    for holder, birth in reversed(list(_births.values())):
        obj: object = holder()
        if obj is None or birth.kind != "settings":
            continue
        for value in list(getattr(obj, "__dict__", {}).values())[:64]:
            text = str(value) if isinstance(value, str) or "Url" in type(value).__name__ else ""
            if "://" not in text:
                continue
            try:
                if make_url(text.strip()) == url:
                    return birth
            except Exception:  # not a URL SQLAlchemy understands
                continue
    return None


def install(patches: PatchRegistry) -> None:
    """Note every pydantic ``BaseSettings`` instance (pydantic-settings) made from now on.

    Called once ``pydantic_settings`` is imported.  The class attribute is
    patched through ``patches``, so ``uninstrument()`` puts the original back.
    """
    import pydantic
    import pydantic_settings

    settings = pydantic_settings.BaseSettings
    original = settings.__init__
    skip = (library_dir(pydantic_settings), library_dir(pydantic))

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            note_birth(self, "settings", skip)
        except Exception:  # the tracer never breaks the application it observes
            report_internal_error("settings probe")

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    __init__.__doc__ = original.__doc__
    patches.patch(settings, "__init__", __init__)


def uninstall() -> None:
    """Forget every noted object (the patch is undone by the registry)."""
    _births.clear()


def order_effects(record: RequestRecord) -> list[dict[str, Any]]:
    """What ``record`` used that an earlier test made, as ``order_effects`` entries:
    engines, then what dependencies produced (settings objects, leaked overrides),
    then settings an engine's URL came from that no dependency produced."""
    test = record.test
    if test is None:
        return []
    effects: list[dict[str, Any]] = []
    from_settings: list[tuple[Birth, DependencyNode | None]] = []
    for use in record.databases.values():
        engine = use.engine
        made_in = test_of(engine.created_test, engine.created_fixture)
        if made_in is not None and made_in != test:
            via = record.provider_of(engine.id)
            effects.append(
                _effect(
                    "engine",
                    engine.id,
                    made_in,
                    phase=engine.created_phase,
                    site=engine.created_at,
                    node=via,
                )
                | {"url": engine.url}
            )
        born = engine.from_settings
        if born is not None and born.test is not None and born.test != test:
            # The engine may be this test's own, built from an earlier test's settings.
            from_settings.append((born, record.provider_of(engine.id)))
    seen: set[tuple[str, str, str]] = set()
    for node in record.dependencies:
        if node.born is None and node.override_leaked_from is None:
            continue  # nearly every node: two attribute reads
        effect = _node_effect(node, test)
        if effect is not None:
            key = (effect["kind"], effect["object"], effect["created_in_test"])
            if key not in seen:
                seen.add(key)
                effects.append(effect)
    for born, via in from_settings:
        if (born.kind, born.object, born.test) not in seen:
            seen.add((born.kind, born.object, str(born.test)))
            effects.append(
                _effect(
                    born.kind, born.object, born.test, phase=born.phase, site=born.site, node=via
                )
            )
    return effects


def _effect(
    kind: str,
    name: str,
    test: str | None,
    *,
    phase: str | None,
    site: str | None,
    node: DependencyNode | None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "object": name,
        "url": None,
        "created_in_test": test,
        "phase": phase,
        "site": site,
        "dependency": node.label if node is not None else None,
        "dependency_id": node.id if node is not None else None,
    }


def _node_effect(node: DependencyNode, test: str) -> dict[str, Any] | None:
    born = node.born
    if born is not None and born.test is not None and born.test != test:
        return _effect(
            born.kind, born.object, born.test, phase=born.phase, site=born.site, node=node
        )
    leaked = node.override_leaked_from
    if leaked is not None and leaked != test:
        name = f"{node.original} -> {node.resolved}"
        return _effect("override", name, leaked, phase=None, site=node.override_site, node=node)
    return None


def describe(effect: dict[str, Any]) -> str:
    """``engine e3 was created during tests/test_a.py::test_x at app/db.py:12``."""
    kind, name = effect.get("kind"), str(effect.get("object"))
    what = {
        "engine": f"engine {name}",
        "settings": f"settings object {name}",
        "override": f"the override {name.partition(' -> ')[2] or name}",
    }.get(str(kind), f"{kind} {name}")
    verb = "registered" if kind == "override" else "created"
    at = f" at {effect['site']}" if effect.get("site") else ""
    return f"{what} was {verb} during {effect['created_in_test']}{at}"
