"""The override ledger: every ``dependency_overrides`` entry, who set it, who used it.

The pytest plugin takes a snapshot of every known app's ``dependency_overrides``
around each fixture setup and test phase, so each entry is attributed to the
test that registered it and to the *scope* that did (a session fixture, a
module-level conftest line, a function fixture or the test body).  Closing a
request then answers, from the request's own nodes:

- ``OVERRIDE_LEAKED``: a node served by an entry a function-scoped fixture or a
  test body of an *earlier* test left behind;
- ``OVERRIDE_IDENTITY_MISMATCH``: a node that was not overridden while the
  provider holds a lookalike key (:mod:`depstrace._lookalike`);
- ``OVERRIDE_NOT_VISIBLE``: a node that was not overridden while another app —
  a mount parent, or a second instance from the same ``create_app()`` line —
  holds the override.

At the end of the run every entry no request consulted becomes
``OVERRIDE_UNUSED``.  Snapshots walk a handful of small dicts; request checks
only look at overrides when the provider has any, so suites without overrides
pay one attribute read per request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from depstrace._callables import describe
from depstrace._context import test_phase
from depstrace._lookalike import why_alike
from depstrace.fastapi import app_id, app_origin, title_of, tracked_apps
from depstrace.findings import (
    OVERRIDE_IDENTITY_MISMATCH,
    OVERRIDE_LEAKED,
    OVERRIDE_NOT_VISIBLE,
    OVERRIDE_UNUSED,
    Finding,
)

# Scopes whose overrides are meant to outlive one test.
_LASTING = frozenset({"import", "session", "package", "module", "class"})


@dataclass(eq=False)
class OverrideEntry:
    """One ``app.dependency_overrides[key] = value`` as the ledger saw it."""

    app_id: str
    family: str  # the app's creation site, else its id: instances of one factory share it
    key: Any
    value: Any
    test: str | None  # the test during which it was registered (None: import/startup)
    scope: str  # import, session, package, module, class, function
    consulted: int = 0
    removed: bool = False
    leaked_from: str | None = None  # the test that ended with it still registered
    requests: set[str] = field(default_factory=set)  # ids of requests it served


class OverrideLedger:
    """Every override entry of the run, keyed by (app id, id(key))."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], OverrideEntry] = {}
        self._history: list[OverrideEntry] = []
        self._served_apps: set[str] = set()
        self._lock = threading.Lock()

    # -- snapshots (pytest plugin) ---------------------------------------------------

    def snapshot(self, scope: str) -> None:
        """Compare every known app's overrides with the ledger; new entries get
        ``scope`` and the running test, vanished ones are marked removed."""
        running = test_phase().nodeid
        seen: set[tuple[str, int]] = set()
        with self._lock:
            for app in tracked_apps():
                overrides = getattr(app, "dependency_overrides", None)
                if not isinstance(overrides, dict):
                    continue
                ident = app_id(app)
                for key, value in list(overrides.items()):
                    slot = (ident, id(key))
                    seen.add(slot)
                    entry = self._entries.get(slot)
                    if entry is None or entry.key is not key or entry.value is not value:
                        self._add(ident, key, value, running, scope)
            for slot, entry in self._entries.items():
                if slot not in seen and not entry.removed:
                    entry.removed = True

    def _add(self, ident: str, key: Any, value: Any, test: str | None, scope: str) -> None:
        origin = app_origin(ident)
        family = origin[0] if origin is not None and origin[0] else ident
        entry = OverrideEntry(ident, family, key, value, test, scope)
        self._entries[(ident, id(key))] = entry
        self._history.append(entry)

    def test_finished(self, nodeid: str) -> None:
        """After teardown: what the test's body or function fixtures left registered leaked."""
        self.snapshot("function")
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
        overrides = getattr(provider, "dependency_overrides", None) or {}
        findings: list[Finding] = []
        plain: list[tuple[Any, Any]] = []  # (node, call) not overridden
        reported: set[int] = set()
        for node, call in zip(record.dependencies, record.calls, strict=False):
            if node.overridden:
                findings.extend(self._consulted(record, ident, node, call, provider))
            elif id(call) not in reported and node.provider == ident:
                plain.append((node, call))
                reported.add(id(call))
        if not plain:
            return findings
        if overrides:
            findings.extend(_lookalikes(record, provider, overrides, plain))
        findings.extend(self._not_visible(record, provider, plain))
        return findings

    def _consulted(
        self, record: Any, ident: str, node: Any, call: Any, provider: Any
    ) -> list[Finding]:
        slot = (ident, id(call))
        with self._lock:
            entry = self._entries.get(slot)
            if entry is None or entry.key is not call:  # set since the last snapshot
                overrides = getattr(provider, "dependency_overrides", {})
                running = test_phase()
                self._add(ident, call, overrides.get(call), running.nodeid, "function")
                entry = self._entries[slot]
            entry.consulted += 1
            entry.requests.add(record.id)
        if entry.leaked_from is None or entry.leaked_from == record.test:
            return []
        where = f"{record.method} {record.path}"
        return [
            Finding(
                code=OVERRIDE_LEAKED,
                severity="error",
                message=(
                    f"{where}: dependency {node.label!r} ({node.original}) was served by the "
                    f"override {node.resolved} that test {entry.leaked_from} registered on app "
                    f"{title_of(ident)!r} [{ident}] and never removed; this request belongs "
                    f"to {record.test or 'no test'}, so its result depends on test order"
                ),
                hint=(
                    "Set overrides in a fixture that removes them after the test "
                    "(yield, then app.dependency_overrides.pop(key) or .clear()), or "
                    "use pytest's monkeypatch.setitem(app.dependency_overrides, key, value)."
                ),
            )
        ]

    def _not_visible(
        self, record: Any, provider: Any, plain: list[tuple[Any, Any]]
    ) -> list[Finding]:
        ident = app_id(provider)
        origin = app_origin(ident)
        others: list[tuple[Any, str]] = []
        for app in record.app_objects:
            if app is not provider and getattr(app, "dependency_overrides", None):
                others.append((app, "the parent app it is mounted in"))
        if origin is not None and origin[0]:
            for app in tracked_apps():
                if app is provider or any(app is other for other, _ in others):
                    continue
                other_origin = app_origin(app_id(app))
                if (
                    other_origin is not None
                    and other_origin[0] == origin[0]
                    and getattr(app, "dependency_overrides", None)
                ):
                    others.append((app, f"another instance created at {origin[0]}"))
        if not others:
            return []
        findings = []
        where = f"{record.method} {record.path}"
        served = f"{title_of(ident)!r} [{ident}]"
        for node, call in plain:
            for app, relation in others:
                overrides = app.dependency_overrides
                if call not in overrides or overrides[call] is call:
                    continue
                other = app_id(app)
                if not relation.startswith("the parent") and not self._live_for(
                    other, call, record.test
                ):
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

    def _live_for(self, app_ident: str, call: Any, test: str | None) -> bool:
        entry = self._entries.get((app_ident, id(call)))
        if entry is None or entry.key is not call:
            return True  # registered before depstrace could see it: still the running setup
        return entry.test == test or entry.test is None or entry.scope in _LASTING

    # -- end of run ----------------------------------------------------------------------

    def unused(self) -> list[dict[str, Any]]:
        """``OVERRIDE_UNUSED`` findings: keys no request of their app (family) consulted."""
        self.snapshot("function")
        consulted: set[tuple[str, int]] = set()
        for entry in self._history:
            if entry.consulted:
                consulted.add((entry.family, id(entry.key)))
        findings: list[dict[str, Any]] = []
        reported: set[tuple[str, int]] = set()
        for entry in self._history:
            slot = (entry.family, id(entry.key))
            # The app holding it served requests, and no instance of that app (the same
            # create_app() line) ever consulted the key.
            if slot in consulted or slot in reported or entry.app_id not in self._served_apps:
                continue
            reported.add(slot)
            key = describe(entry.key)
            value = describe(entry.value)
            findings.append(
                Finding(
                    code=OVERRIDE_UNUSED,
                    severity="warning",
                    message=(
                        f"the override {key.qualname} -> {value.qualname} on app "
                        f"{title_of(entry.app_id)!r} [{entry.app_id}] (key defined at "
                        f"{key.site or 'an unknown site'}) was never consulted by any request "
                        "of the run, although that app served requests: no route depends on "
                        "that exact object"
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
            self._history.clear()
            self._served_apps.clear()


def _lookalikes(
    record: Any, provider: Any, overrides: dict[Any, Any], plain: list[tuple[Any, Any]]
) -> list[Finding]:
    used = {id(call) for call in record.calls}
    keys = [key for key in list(overrides) if id(key) not in used]
    if not keys:
        return []
    ident = app_id(provider)
    where = f"{record.method} {record.path}"
    findings = []
    for node, call in plain:
        for key in keys:
            reason = why_alike(key, call)
            if reason is None:
                continue
            key_info, call_info = describe(key), describe(call)
            findings.append(
                Finding(
                    code=OVERRIDE_IDENTITY_MISMATCH,
                    severity="error",
                    message=(
                        f"{where}: dependency {node.label!r} ran the original "
                        f"{call_info.qualname} ({call_info.site or 'site unknown'}) although "
                        f"app {title_of(ident)!r} [{ident}] has an override keyed on "
                        f"{key_info.qualname} ({key_info.site or 'site unknown'}), another "
                        f"object: {reason}. FastAPI matches override keys by identity"
                    ),
                    hint=(
                        "Use the exact object the route passes to Depends() as the key: import "
                        "it from the same module path the route module uses, after any reload, "
                        "and for class-instance dependencies keep one module-level instance "
                        "and override that instance."
                    ),
                )
            )
            break
    return findings
