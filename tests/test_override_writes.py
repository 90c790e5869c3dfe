"""Write tracking of ``dependency_overrides``: reads untouched, every write reported."""

from __future__ import annotations

import copy
import pickle
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

import depstrace
from depstrace import _failopen, _override_writes
from depstrace._override_writes import REMOVED, TrackedOverrides
from depstrace._patching import PatchRegistry

Writes = list[tuple[Any, list[tuple[Any, Any]]]]


def get_db() -> str:
    """The dependency the routes use."""
    return "prod"


def fake_db() -> str:
    """An override for it."""
    return "fake"


def other_db() -> str:
    """Another override for it."""
    return "other"


def make_app() -> FastAPI:
    """An app whose GET / answers with what get_db resolved to."""
    app = FastAPI()

    @app.get("/")
    def root(db: Annotated[str, Depends(get_db)]) -> str:
        return db

    return app


@pytest.fixture
def writes() -> Iterator[Writes]:
    """Write tracking installed on FastAPI, reporting to a list of (app, changes)."""
    seen: Writes = []
    patches = PatchRegistry()
    _override_writes.install(patches, FastAPI, lambda app, changes: seen.append((app, changes)), [])
    try:
        yield seen
    finally:
        patches.restore()
        _override_writes.uninstall()


def changes(seen: Writes, app: Any) -> list[list[tuple[Any, Any]]]:
    """The change lists reported, after checking each was reported for ``app``."""
    assert all(owner is app for owner, _ in seen)
    return [change for _, change in seen]


def test_reads_come_straight_from_the_instance_dict(writes: Writes) -> None:
    """Only __setattr__/__delattr__ are patched (no class attribute that could slow
    reads down), the attribute is the instance's own dict, and the tracked dict's read
    methods are dict's own."""
    assert "__setattr__" in vars(FastAPI)
    assert "__delattr__" in vars(FastAPI)
    assert "dependency_overrides" not in vars(FastAPI)
    app = FastAPI()
    assert app.dependency_overrides is vars(app)["dependency_overrides"]
    assert type(app.dependency_overrides) is TrackedOverrides
    for name in ("get", "__getitem__", "__contains__", "__iter__", "__len__", "items", "keys"):
        assert getattr(TrackedOverrides, name) is getattr(dict, name), name
    app.title = "renamed"  # any other attribute is set as before
    assert app.title == "renamed"
    assert writes == []  # FastAPI.__init__'s empty dict changed nothing


def test_every_mutator_reports_what_changed(writes: Writes) -> None:
    """Item assignment, update, setdefault, |=, pop, del, popitem and clear each
    report the keys they set or removed, and nothing when nothing changed."""
    app = FastAPI()
    d = app.dependency_overrides
    d[get_db] = fake_db
    d[get_db] = fake_db  # the same value again: no change
    d.update({fake_db: get_db})
    d.setdefault(fake_db, other_db)  # present: no change
    d.setdefault(other_db, get_db)
    d |= {get_db: other_db}
    d.pop(other_db)
    del d[fake_db]
    d.popitem()
    d[get_db] = fake_db
    d.clear()
    assert changes(writes, app) == [
        [(get_db, fake_db)],
        [(fake_db, get_db)],
        [(other_db, get_db)],
        [(get_db, other_db)],
        [(other_db, REMOVED)],
        [(fake_db, REMOVED)],
        [(get_db, REMOVED)],
        [(get_db, fake_db)],
        [(get_db, REMOVED)],
    ]
    assert d == {}


def test_reassignment_and_deletion_report_the_difference(writes: Writes) -> None:
    """``app.dependency_overrides = {...}`` reports what differs from the old dict;
    ``|=`` on the attribute reports once; ``del`` removes every key."""
    app = FastAPI()
    app.dependency_overrides[get_db] = fake_db
    app.dependency_overrides = {get_db: fake_db, fake_db: other_db}
    app.dependency_overrides = {}
    app.dependency_overrides |= {get_db: other_db}
    del app.dependency_overrides
    assert "dependency_overrides" not in vars(app)
    assert changes(writes, app) == [
        [(get_db, fake_db)],
        [(fake_db, other_db)],
        [(get_db, REMOVED), (fake_db, REMOVED)],
        [(get_db, other_db)],
        [(get_db, REMOVED)],
    ]


def test_a_fresh_dict_is_tracked_a_dict_someone_holds_is_kept(writes: Writes) -> None:
    """A new ``{...}`` becomes a tracked copy; a dict another name holds stays the very
    object the app uses, so writes through that name still reach FastAPI."""
    app = make_app()
    app.dependency_overrides = {get_db: fake_db}
    assert type(app.dependency_overrides) is TrackedOverrides
    assert app.dependency_overrides == {get_db: fake_db}

    held: dict[Any, Any] = {}
    app.dependency_overrides = held
    assert app.dependency_overrides is held
    held[get_db] = other_db
    assert TestClient(app).get("/").json() == "other"

    class Holder:
        def __init__(self) -> None:
            self.overrides: dict[Any, Any] = {}

    holder = Holder()
    setattr(app, "dependency_overrides", holder.overrides)  # noqa: B010 - the setattr() path
    assert app.dependency_overrides is holder.overrides

    special: defaultdict[Any, Any] = defaultdict(lambda: fake_db)
    app.dependency_overrides = special
    assert app.dependency_overrides is special
    assert changes(writes, app) == [
        [(get_db, fake_db)],  # the fresh dict
        [(get_db, REMOVED)],  # held replaced it
        [(get_db, REMOVED)],  # holder's dict replaced held (whose write was untracked)
    ]


def test_the_tracked_dict_reads_compares_and_copies_like_a_dict(writes: Writes) -> None:
    """Equality, isinstance, repr, copies, ``|`` and pickling see a plain dict."""
    app = FastAPI()
    app.dependency_overrides[get_db] = fake_db
    d = app.dependency_overrides
    assert d == {get_db: fake_db}
    assert isinstance(d, dict)
    assert repr(d) == repr({get_db: fake_db})
    for copied in (
        d.copy(),
        dict(d),
        copy.copy(d),
        copy.deepcopy(d),
        pickle.loads(pickle.dumps(d)),
        d | {},
    ):
        assert type(copied) is dict
        assert copied == {get_db: fake_db}
    assert type(d)() == {}  # dict's constructor signature still works


def test_monkeypatch_setitem_and_its_undo_are_writes(writes: Writes) -> None:
    """pytest's monkeypatch.setitem and its undo work and are both reported."""
    app = make_app()
    app.dependency_overrides[get_db] = fake_db
    patch = pytest.MonkeyPatch()
    patch.setitem(app.dependency_overrides, get_db, other_db)
    assert TestClient(app).get("/").json() == "other"
    patch.undo()
    assert TestClient(app).get("/").json() == "fake"
    patch.setitem(app.dependency_overrides, fake_db, get_db)
    patch.undo()
    assert app.dependency_overrides == {get_db: fake_db}
    assert changes(writes, app) == [
        [(get_db, fake_db)],
        [(get_db, other_db)],
        [(get_db, fake_db)],
        [(fake_db, get_db)],
        [(fake_db, REMOVED)],
    ]


def test_failed_writes_raise_as_before_and_report_what_they_did(writes: Writes) -> None:
    """A write that raises raises the same error; a partial update is still reported."""
    app = FastAPI()
    d = app.dependency_overrides
    with pytest.raises(KeyError):
        del d[get_db]
    with pytest.raises(KeyError):
        d.pop(get_db)
    with pytest.raises(KeyError, match="dictionary is empty"):
        d.popitem()
    with pytest.raises(TypeError, match="unhashable"):
        d[[]] = fake_db  # type: ignore[index]
    with pytest.raises(ValueError, match="length 1"):
        d.update([(get_db, fake_db), (fake_db,)])  # type: ignore[list-item]
    assert d == {get_db: fake_db}
    assert changes(writes, app) == [[(get_db, fake_db)]]


def test_a_failing_ledger_never_breaks_the_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the ledger raises, the write still happens and costs one counted error."""

    def broken(app: Any, changes: list[tuple[Any, Any]]) -> None:
        raise RuntimeError("ledger fault")

    counter: Counter[str] = Counter()
    monkeypatch.setattr(_failopen, "internal_errors", counter)
    patches = PatchRegistry()
    _override_writes.install(patches, FastAPI, broken, [])
    try:
        app = make_app()
        app.dependency_overrides[get_db] = fake_db
        app.dependency_overrides = {get_db: other_db}
        assert TestClient(app).get("/").json() == "other"
    finally:
        patches.restore()
        _override_writes.uninstall()
    assert counter == Counter({"override write tracking": 2})


def test_uninstrument_leaves_plain_working_dicts(tmp_path: Path) -> None:
    """After uninstrument FastAPI's own __setattr__ is back and tracked dicts are inert."""
    before = (FastAPI.__setattr__, FastAPI.__delattr__)
    depstrace.instrument(trace_file=None)
    app = make_app()
    assert type(app.dependency_overrides) is TrackedOverrides
    depstrace.uninstrument()
    assert (FastAPI.__setattr__, FastAPI.__delattr__) == before
    assert before == (object.__setattr__, object.__delattr__)
    assert "__setattr__" not in vars(FastAPI)
    assert _override_writes._sink is None
    app.dependency_overrides[get_db] = fake_db
    assert TestClient(app).get("/").json() == "fake"
    app.dependency_overrides = {}
    assert type(app.dependency_overrides) is dict
    assert TestClient(app).get("/").json() == "prod"


def test_an_app_created_before_instrumentation_is_tracked_once_it_serves(
    tmp_path: Path,
) -> None:
    """An earlier app's dict becomes tracked when the app first serves, unless
    another name holds it (then it stays the same object)."""
    app, aliased = make_app(), make_app()
    held = aliased.dependency_overrides
    depstrace.instrument(trace_file=None)
    try:
        assert type(app.dependency_overrides) is dict
        assert TestClient(app).get("/").json() == "prod"
        assert type(app.dependency_overrides) is TrackedOverrides
        app.dependency_overrides[get_db] = fake_db
        assert TestClient(app).get("/").json() == "fake"

        assert TestClient(aliased).get("/").json() == "prod"
        assert aliased.dependency_overrides is held
        held[get_db] = other_db
        assert TestClient(aliased).get("/").json() == "other"
    finally:
        depstrace.uninstrument()
