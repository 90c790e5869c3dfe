"""The override ledger: every ``dependency_overrides`` entry, who set it, who used it.

Every write to an app's ``dependency_overrides`` reaches :meth:`OverrideLedger.write`
when it happens (:mod:`depstrace._override_writes`), with the ``file:line`` of
the user code that made it and the *scope* that made it:

- ``import``: module-level code of a module being imported, whichever test
  triggered the import (a tutorial module imported lazily by a fixture);
- a fixture's scope: the write ran in a fixture's setup or teardown, found by
  that fixture's code on the stack (the pytest plugin registers each fixture
  it sets up), else by the fixture being set up;
- ``session`` outside any test (a ``pytest_configure`` hook), else
  ``function``: a test body, or ``monkeypatch``'s undo.

A write that puts back, within the test that removed or replaced it, the very
value an entry had revives that entry, so ``monkeypatch.setitem`` over an
import-time override and its undo leave the import-time entry in place.
Snapshots around fixture setup and test phases remain as a fallback for
writes the tracking cannot see (a dict someone else also holds, a C-level
``dict.__setitem__``); they attribute what changed to the snapshot's scope,
with no site.  Closing a request then answers, from the request's own nodes:

- ``OVERRIDE_LEAKED``: a node served by an entry a function-scoped fixture or a
  test body of an *earlier* test left behind;
- ``OVERRIDE_IDENTITY_MISMATCH``: a node that was not overridden while the
  provider holds a lookalike key (:mod:`depstrace._lookalike`);
- ``OVERRIDE_NOT_VISIBLE``: a node that was not overridden while another app —
  a mount parent, or a second instance from the same ``create_app()`` line —
  holds the override.

At the end of the run every key no request consulted becomes
``OVERRIDE_UNUSED``, including keys set and removed within one test, unless a
route of its app (or of an app mounted in it) depends on that key: a partial
run that reached none of those routes did not make it unused.  Every
finding says where the override was set.  Request checks only look at
overrides when the provider has any, so suites without overrides pay one
attribute read per request.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

from depstrace import _override_writes
from depstrace._callables import describe
from depstrace._context import test_phase
from depstrace._failopen import report_internal_error
from depstrace._lookalike import why_alike
from depstrace._names import callable_label
from depstrace._override_writes import REMOVED
from depstrace._sites import user_call
from depstrace.fastapi import app_id, app_origin, title_of, tracked_apps
from depstrace.findings import (
    OVERRIDE_IDENTITY_MISMATCH,
    OVERRIDE_LEAKED,
    OVERRIDE_NOT_VISIBLE,
    OVERRIDE_UNUSED,
    Finding,
)
from depstrace.routes import routes_using

# Scopes whose overrides are meant to outlive one test.
_LASTING = frozenset({"import", "session", "package", "module", "class"})

Slot = tuple[str, int]  # (app id, id(key))


@dataclass(eq=False)
class OverrideEntry:
    """One ``app.dependency_overrides[key] = value`` as the ledger saw it."""

    app_id: str
    family: str  # the app's creation site, else its id: instances of one factory share it
    key: Any
    value: Any
    test: str | None  # the test during which it was registered (None: import/startup)
    scope: str  # import, session, package, module, class, function
    site: str | None = None  # "file:line" of the write (None: only a snapshot saw it)
    consulted: int = 0
    removed: bool = False
    removed_in: str | None = None  # the test running when it was removed or replaced
    leaked_from: str | None = None  # the test that ended with it still registered
    requests: set[str] = field(default_factory=set)  # ids of requests it served


def set_at(entry: OverrideEntry | None, words: str) -> str:
    """``words`` with ``{site}`` filled in for a message, or nothing when the site is unknown."""
    return words.format(site=entry.site) if entry is not None and entry.site else ""


class OverrideLedger:
    """Every override entry of the run, keyed by (app id, id(key))."""

    def __init__(self) -> None:
        self._entries: dict[Slot, OverrideEntry] = {}  # the latest entry of each slot
        self._past: dict[Slot, list[OverrideEntry]] = {}  # every entry of each slot
        self._history: list[OverrideEntry] = []
        self._served_apps: set[str] = set()
        self._fixture_codes: dict[CodeType, str] = {}  # fixture function code -> its scope
        self._fixtures: list[str] = []  # scopes of the fixtures being set up, innermost last
        self._lock = threading.RLock()

    # -- writes (depstrace._override_writes) -----------------------------------------

    def write(self, app: Any, changes: list[tuple[Any, Any]]) -> None:
        """``app``'s overrides just changed: ``(key, value)`` set, ``(key, REMOVED)`` gone."""
        call = user_call(self._fixture_codes)
        running = test_phase().nodeid
        if call.importing:
            scope = "import"
        elif call.mark is not None:
            scope = call.mark
        elif self._fixtures:
            scope = self._fixtures[-1]
        else:
            scope = "function" if running is not None else "session"
        ident = app_id(app)
        with self._lock:
            for key, value in changes:
                if value is REMOVED:
                    live = self._live((ident, id(key)), key)
                    if live is not None:
                        live.removed, live.removed_in = True, running
                else:
                    self._set(ident, key, value, test=running, scope=scope, site=call.site)

    def fixture_started(self, func: Any, scope: str) -> None:
        """A fixture's setup begins: its writes, now and in its teardown, get ``scope``."""
        self._fixtures.append(scope)
        fn = inspect.unwrap(func)  # pytest-asyncio and decorators keep __wrapped__
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        if isinstance(code, CodeType):
            self._fixture_codes[code] = scope

    def fixture_finished(self) -> None:
        """The fixture setup :meth:`fixture_started` announced is over."""
        if self._fixtures:
            self._fixtures.pop()

    def _live(self, slot: Slot, key: Any) -> OverrideEntry | None:
        entry = self._entries.get(slot)
        if entry is None or entry.key is not key or entry.removed:
            return None
        return entry

    def _set(
        self, ident: str, key: Any, value: Any, *, test: str | None, scope: str, site: str | None
    ) -> None:
        slot = (ident, id(key))
        live = self._live(slot, key)
        if live is not None:
            if live.value is value:
                return
            live.removed, live.removed_in = True, test
        # Putting back, within the test that removed or replaced it, the value an entry
        # had restores that entry (its scope and site): monkeypatch's undo, or
        # `app.dependency_overrides = saved`.  Setting it again in a later test is new.
        for past in reversed(self._past.get(slot, ())):
            if past.key is key and past.value is value and past.removed_in == test:
                past.removed, past.removed_in = False, None
                self._entries[slot] = past
                return
        origin = app_origin(ident)
        family = origin[0] if origin is not None and origin[0] else ident
        entry = OverrideEntry(ident, family, key, value, test, scope, site)
        self._entries[slot] = entry
        self._past.setdefault(slot, []).append(entry)
        self._history.append(entry)

    # -- snapshots (the fallback; pytest plugin) ------------------------------------

    def snapshot(self, scope: str, test: str | None = None) -> None:
        """Compare every known app's overrides with the ledger: entries no write
        explained get ``scope`` and ``test`` (default: the running test), vanished
        ones are removed.

        Also starts tracking the overrides of apps created before instrumentation.
        """
        running = test if test is not None else test_phase().nodeid
        seen: set[Slot] = set()
        with self._lock:
            for app in tracked_apps():
                _adopt(app)
                overrides = _overrides_of(app)
                if overrides is None:
                    continue
                ident = app_id(app)
                for key, value in list(overrides.items()):
                    slot = (ident, id(key))
                    seen.add(slot)
                    live = self._live(slot, key)
                    if live is None or live.value is not value:
                        self._set(ident, key, value, test=running, scope=scope, site=None)
            for slot, entry in self._entries.items():
                if slot not in seen and not entry.removed:
                    entry.removed, entry.removed_in = True, running

    def test_finished(self, nodeid: str) -> None:
        """After teardown: what the test's body or function fixtures left registered leaked."""
        self.snapshot("function", nodeid)
        with self._lock:
            for entry in self._entries.values():
                if not entry.removed and entry.test == nodeid and entry.scope not in _LASTING:
                    entry.leaked_from = nodeid

    # -- requests ------------------------------------------------------------------------

    def check_request(self, record: Any) -> list[Finding]:
        """Findings about overrides for a closing request; counts what it consulted."""
        provider = record.provider
        if provider is None or not record.calls:
            return []
        ident = app_id(provider)
        self._served_apps.add(ident)
        _adopt(provider)
        overrides = _overrides_of(provider) or {}
        findings: list[Finding] = []
        plain: list[tuple[Any, Any]] = []  # (node, call) not overridden
        reported: set[int] = set()
        for node, call in zip(record.dependencies, record.calls, strict=False):
            if node.overridden:
                findings.extend(self._consulted(record, ident, node, call, overrides))
            elif id(call) not in reported and node.provider == ident:
                plain.append((node, call))
                reported.add(id(call))
        if not plain:
            return findings
        if overrides:
            findings.extend(self._lookalikes(record, ident, overrides, plain))
        findings.extend(self._not_visible(record, provider, plain))
        return findings

    def _consulted(
        self, record: Any, ident: str, node: Any, call: Any, overrides: dict[Any, Any]
    ) -> list[Finding]:
        slot = (ident, id(call))
        value = overrides.get(call)
        with self._lock:
            entry = self._live(slot, call)
            if entry is None or entry.value is not value:
                # Written where neither tracking nor a snapshot could see it yet.
                running = test_phase().nodeid
                self._set(ident, call, value, test=running, scope="function", site=None)
                entry = self._entries[slot]
            entry.consulted += 1
            entry.requests.add(record.id)
        node.override_site = entry.site
        node.override_leaked_from = entry.leaked_from
        if entry.leaked_from is None or entry.leaked_from == record.test:
            return []
        where = f"{record.method} {record.path}"
        at = f" at {entry.site}" if entry.site else ""
        return [
            Finding(
                code=OVERRIDE_LEAKED,
                severity="error",
                message=(
                    f"{where}: dependency {node.label!r} ({node.original}) was served by the "
                    f"override {node.resolved} that test {entry.leaked_from} registered{at} on "
                    f"app {title_of(ident)!r} [{ident}] and never removed; this request belongs "
                    f"to {record.test or 'no test'}, so its result depends on test order"
                ),
                hint=(
                    "Set overrides in a fixture that removes them after the test "
                    "(yield, then app.dependency_overrides.pop(key) or .clear()), or "
                    "use pytest's monkeypatch.setitem(app.dependency_overrides, key, value)."
                ),
            )
        ]

    def _lookalikes(
        self,
        record: Any,
        ident: str,
        overrides: dict[Any, Any],
        plain: list[tuple[Any, Any]],
    ) -> list[Finding]:
        used = {id(call) for call in record.calls}
        keys = [key for key in list(overrides) if id(key) not in used]
        if not keys:
            return []
        where = f"{record.method} {record.path}"
        findings = []
        for node, call in plain:
            for key in keys:
                reason = why_alike(key, call)
                if reason is None:
                    continue
                key_info = describe(key)
                entry = self._live((ident, id(key)), key)
                findings.append(
                    Finding(
                        code=OVERRIDE_IDENTITY_MISMATCH,
                        severity="error",
                        message=(
                            f"{where}: dependency {node.label!r} ran the original "
                            f"{callable_label(node.to_dict(), 'original', site=True)} although "
                            f"app {title_of(ident)!r} [{ident}] has an override"
                            f"{set_at(entry, ', set at {site},')} keyed on "
                            f"{key_info.qualname} ({key_info.site or 'site unknown'}), another "
                            f"object: {reason}. FastAPI matches override keys by identity"
                        ),
                        hint=(
                            "Use the exact object the route passes to Depends() as the key: "
                            "import it from the same module path the route module uses, after "
                            "any reload, and for class-instance dependencies keep one "
                            "module-level instance and override that instance."
                        ),
                    )
                )
                break
        return findings

    def _not_visible(
        self, record: Any, provider: Any, plain: list[tuple[Any, Any]]
    ) -> list[Finding]:
        ident = app_id(provider)
        origin = app_origin(ident)
        others: list[tuple[Any, dict[Any, Any], str]] = []
        for app in record.app_objects:
            overrides = _overrides_of(app)
            if app is not provider and overrides:
                others.append((app, overrides, "the parent app it is mounted in"))
        if origin is not None and origin[0]:
            for app in tracked_apps():
                if app is provider or any(app is other for other, _, _ in others):
                    continue
                other_origin = app_origin(app_id(app))
                overrides = _overrides_of(app)
                if other_origin is not None and other_origin[0] == origin[0] and overrides:
                    others.append((app, overrides, f"another instance created at {origin[0]}"))
        if not others:
            return []
        findings = []
        where = f"{record.method} {record.path}"
        served = f"{title_of(ident)!r} [{ident}]"
        for node, call in plain:
            for app, overrides, relation in others:
                if call not in overrides or overrides[call] is call:
                    continue
                other = app_id(app)
                entry = self._live((other, id(call)), call)
                if not relation.startswith("the parent") and not _live_for(entry, record.test):
                    continue
                findings.append(
                    Finding(
                        code=OVERRIDE_NOT_VISIBLE,
                        severity="error",
                        message=(
                            f"{where}: dependency {node.label!r} ({node.original}) ran "
                            f"unreplaced: app {served} served the request and consulted its "
                            f"own dependency_overrides, but the override "
                            f"{describe(overrides[call]).qualname} is registered on "
                            f"{title_of(other)!r} [{other}], {relation}"
                            f"{set_at(entry, '; the override was set at {site}')}"
                        ),
                        hint=(
                            f"Register the override on the app that serves the route "
                            f"({title_of(ident)!r}: a mounted app is its own overrides "
                            "provider), or make the test client use the same app instance "
                            "the override was set on."
                        ),
                    )
                )
                break
        return findings

    # -- end of run ----------------------------------------------------------------------

    def unused(self) -> list[dict[str, Any]]:
        """``OVERRIDE_UNUSED`` findings: keys no request of their app (family) consulted."""
        self.snapshot("function")
        consulted: set[tuple[str, int]] = set()
        for entry in self._history:
            if entry.consulted:
                consulted.add((entry.family, id(entry.key)))
        # The app holding it served requests, and no instance of that app (the same
        # create_app() line) ever consulted the key: one finding per key, every site.
        groups: dict[tuple[str, int], list[OverrideEntry]] = {}
        for entry in self._history:
            slot = (entry.family, id(entry.key))
            if slot not in consulted and entry.app_id in self._served_apps:
                groups.setdefault(slot, []).append(entry)
        findings: list[dict[str, Any]] = []
        for entries in groups.values():
            entry = entries[0]
            used_by = _routes_using(entry.app_id, entry.key)
            if used_by:
                # A partial run reached none of these routes: the override is not unused.
                continue
            # Claim that no route depends on it only when every route was examined.
            claim = ": no route depends on that exact object" if used_by == [] else ""
            key = describe(entry.key)
            value = describe(entry.value)
            findings.append(
                Finding(
                    code=OVERRIDE_UNUSED,
                    severity="warning",
                    message=(
                        f"the override {key.qualname} -> {value.qualname} on app "
                        f"{title_of(entry.app_id)!r} [{entry.app_id}]{_sites_of(entries)} "
                        f"(key defined at {key.site or 'an unknown site'}) was never consulted "
                        f"by any request of the run, although that app served requests{claim}"
                    ),
                    hint=(
                        "Key the override on the very object the route passes to Depends() "
                        "(import it from the module the route imports it from), or remove it; "
                        "`depstrace doctor MODULE:APP` lists which keys routes use."
                    ),
                ).to_dict()
                | {
                    "test": entry.test,
                    "phase": None,
                    "app": entry.app_id,
                    # Structured, so a merged run can tell whether another process used it.
                    "key": key.qualname,
                    "value": value.qualname,
                }
            )
        return findings

    def clear(self) -> None:
        """Forget everything (a new trace session)."""
        with self._lock:
            self._entries.clear()
            self._past.clear()
            self._history.clear()
            self._served_apps.clear()
            self._fixture_codes.clear()
            self._fixtures.clear()


def _routes_using(ident: str, key: Any) -> list[str] | None:
    """The routes of app ``ident`` (mounted apps included) whose dependency tree uses
    ``key``, by the route walk the doctor reports on; ``None`` when the app is gone or
    not fully walkable."""
    app = next((a for a in tracked_apps() if app_id(a) == ident), None)
    if app is None:
        return None
    try:
        places = routes_using(app, [key])
    except Exception:
        report_internal_error("override checks (route walk)")
        return None
    return places[0] if places is not None else None


def _live_for(entry: OverrideEntry | None, test: str | None) -> bool:
    """Whether an override on another instance was meant for the running test too."""
    if entry is None:
        return True  # registered before depstrace could see it: still the running setup
    return entry.test == test or entry.test is None or entry.scope in _LASTING


def _sites_of(entries: list[OverrideEntry]) -> str:
    """`` set at a.py:3, b.py:9 and 2 more places`` (every distinct known site)."""
    sites = list(dict.fromkeys(e.site for e in entries if e.site))
    if not sites:
        return ""
    shown = ", ".join(sites[:3])
    more = f" and {len(sites) - 3} more places" if len(sites) > 3 else ""
    return f" set at {shown}{more}"


def _overrides_of(app: Any) -> dict[Any, Any] | None:
    """The app's ``dependency_overrides`` when it is a dict (an app may have none)."""
    overrides = getattr(app, _override_writes.NAME, None)
    return overrides if isinstance(overrides, dict) else None


def _adopt(app: Any) -> None:
    try:
        _override_writes.adopt(app)
    except Exception:
        report_internal_error("override write tracking (adopt)")
