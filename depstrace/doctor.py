"""``depstrace doctor MODULE:APP``: what an app will resolve, found without a request.

Loading the app under instrumentation is enough to answer most "why does my
suite reach the real database" questions before running a single test: which
dependency each route asks for, which overrides are registered where (a mounted
app is its own overrides provider, fastapi#5115), which override keys no route
uses but look like a dependency one does use (a reloaded module, a second
import path, fastapi#3588), and which engines module-level code created, with
their redacted URL and creation site.  The report is one plain dict (the
``--json`` document, docs/doctor.md); the text form is rendered from it, so the
two cannot disagree.  No password is printed: URLs come from the engine
registry, already redacted, and environment variables are named, never shown.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
from typing import Any

from depstrace._callables import library_dirs
from depstrace._lookalike import label, origin, why_alike
from depstrace._names import name_parts
from depstrace._redact import redact_text
from depstrace._testdb import ENV_VAR, TestDatabaseRule
from depstrace.routes import AppScan, RouteWalk, Use, overrides_of, same_key

SCHEMA = 1

WRONG_DB = "WRONG_DB"
OVERRIDE_IDENTITY_MISMATCH = "OVERRIDE_IDENTITY_MISMATCH"
OVERRIDE_NOT_VISIBLE = "OVERRIDE_NOT_VISIBLE"
OVERRIDE_UNUSED = "OVERRIDE_UNUSED"


class UsageError(Exception):
    """The target cannot be loaded: the message says why (exit status 2)."""


def add_parser(commands: Any) -> None:
    """Add the ``doctor`` subcommand to the CLI's subparsers."""
    doctor = commands.add_parser(
        "doctor",
        help="load a FastAPI app without running requests and print its routes, dependency "
        "trees, overrides, mounts and engines (exit 1 if it finds a problem)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    doctor.add_argument("target", metavar="MODULE:APP", help="e.g. app.main:app")
    doctor.add_argument(
        "--factory",
        action="store_true",
        help="APP is a factory to call without arguments (MODULE:create_app() also works)",
    )
    doctor.add_argument(
        "--app-dir",
        default=".",
        help="directory put first on sys.path before importing MODULE (default: .)",
    )
    doctor.add_argument(
        "--test-db",
        metavar="PATTERN",
        default=None,
        help=f"what counts as a test database (default: {ENV_VAR}, else the default rule)",
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    """Run ``depstrace doctor``: 0 no problem, 1 problems found, 2 usage or import error."""
    try:
        rule = _rule(args.test_db)
        report = examine(args.target, factory=args.factory, app_dir=args.app_dir, rule=rule)
    except UsageError as exc:
        print(f"depstrace doctor: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for line in text_lines(report):
            print(line)
    return 1 if report["problems"] else 0


def _rule(spec: str | None) -> TestDatabaseRule:
    try:
        if spec is None:
            return TestDatabaseRule.from_env(os.environ)
        return TestDatabaseRule(spec, source="--test-db")
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


# --- loading ---------------------------------------------------------------------------


def examine(
    target: str, *, factory: bool = False, app_dir: str = ".", rule: TestDatabaseRule
) -> dict[str, Any]:
    """Load ``target`` (``MODULE:APP``) under instrumentation and return the report dict."""
    import depstrace
    from depstrace import fastapi as probe

    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"target must be MODULE:APP (e.g. app.main:app), got {target!r}")
    if attribute.endswith("()"):
        attribute, factory = attribute[:-2], True
    ours = not depstrace.is_instrumented()
    try:
        session = depstrace.instrument(trace_file=None, test_db=rule)
    except depstrace.ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    if ours:
        # Spans and log lines about import-time statements would only repeat this report.
        session.observers.clear()
    before_modules = set(sys.modules)
    before_apps = {id(app) for app in probe.known_apps()}
    path_entry = os.path.abspath(app_dir)
    added = path_entry not in sys.path
    if added:
        sys.path.insert(0, path_entry)
    try:
        # What the app prints while it loads must not end up inside the --json document.
        with contextlib.redirect_stdout(sys.stderr):
            app = _load(module_name, attribute, factory)
        new_modules = [sys.modules[n] for n in set(sys.modules) - before_modules]
        created = [app for app in probe.known_apps() if id(app) not in before_apps]
        return _Doctor(rule).report(target, app, created, [sys.modules[module_name], *new_modules])
    finally:
        if added and path_entry in sys.path:
            sys.path.remove(path_entry)
        if ours:
            depstrace.uninstrument()


def _load(module_name: str, attribute: str, factory: bool) -> Any:
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # module-level code may call sys.exit()
        raise UsageError(f"cannot import {module_name}: {_exception(exc)}") from None
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise UsageError(f"{module_name} has no attribute {attribute}") from None
    if factory:
        try:
            value = value()
        except Exception as exc:
            raise UsageError(
                f"calling {module_name}:{attribute}() failed: {_exception(exc)}"
            ) from None
    from fastapi import FastAPI

    found, hops = value, 0
    while not isinstance(found, FastAPI) and hops < 8 and hasattr(found, "app"):
        found, hops = found.app, hops + 1  # ASGI middleware wrapping the app
    if not isinstance(found, FastAPI):
        hint = " (call it with --factory or write MODULE:APP())" if callable(value) else ""
        raise UsageError(
            f"{attribute} is not a FastAPI app: {module_name}:{attribute} is a "
            f"{type(value).__module__}.{type(value).__qualname__}{hint}"
        )
    return found


def _exception(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")


# --- examining -------------------------------------------------------------------------


class _Doctor(RouteWalk):
    def __init__(self, rule: TestDatabaseRule) -> None:
        super().__init__()
        self.rule = rule
        self.problems: list[dict[str, str]] = []
        self.modules: dict[str, Any] = {}

    def report(
        self, target: str, app: Any, created: list[Any], modules: list[Any]
    ) -> dict[str, Any]:
        root = self.scan_app(app, mount_path=None, prefix="", ancestors=[])
        for module in modules:
            self.note_module(module)
        for scan in self.scans:
            scan.doc["overrides"] = self._overrides(scan)
        self._route_lookalikes()
        mine = {id(scan.app) for scan in self.scans}
        others = [self._other_app(other) for other in created if id(other) not in mine]
        engines = self._engines()
        return {
            "schema": SCHEMA,
            "target": target,
            "app": root.doc,
            "other_apps": sorted(others, key=lambda doc: str(doc["id"])),
            "engines": engines,
            "test_db_rule": self.rule.describe(),
            "problems": self.problems,
        }

    # -- overrides ------------------------------------------------------------------------

    def _overrides(self, scan: AppScan) -> list[dict[str, Any]]:
        entries = []
        overrides = overrides_of(scan.app)
        for key, value in list(overrides.items()):
            used_by = [use.where for use in scan.uses if same_key(key, use.call)]
            entry: dict[str, Any] = {
                "key": label(key),
                "key_site": origin(key),
                "value": label(value),
                "value_site": origin(value),
                "used_by": used_by,
                "needed_by_mounted_apps": [],
                "lookalikes": [],
                "unknown_routes": [],
            }
            entries.append(entry)
            entry["needed_by_mounted_apps"] = needed = self._needed_below(scan, key)
            entry["lookalikes"] = self._lookalikes(scan, key, used_by)
            if used_by or needed or entry["lookalikes"]:
                continue
            if scan.opaque:  # some routes could not be examined: they may use it
                entry["unknown_routes"] = sorted(set(scan.opaque))
                continue
            self._problem(
                OVERRIDE_UNUSED,
                f"the override of {self._named(key)} on {_app_name(scan)} is used by no route "
                "of that app",
                "Remove it, or key it on the dependency object a route of this app "
                "declares in Depends(...).",
            )
        return entries

    def _needed_below(self, scan: AppScan, key: Any) -> list[dict[str, Any]]:
        """Routes of apps mounted below ``scan`` that use ``key`` without an override."""
        needed = []
        for sub in self.scans:
            if scan not in sub.ancestors:
                continue
            places = [u.where for u in sub.uses if not u.overridden and same_key(key, u.call)]
            if not places:
                continue
            needed.append({"app": sub.ident, "mount_path": sub.mount_path, "used_by": places})
            self._problem(
                OVERRIDE_NOT_VISIBLE,
                f"the override of {self._named(key)} on {_app_name(scan)} does not apply to "
                f"{', '.join(places)}, served by the app {_app_name(sub)} mounted at "
                f"{sub.mount_path}: a mounted app is its own overrides provider, overrides "
                "on the parent do not apply",
                f"Register the override on the mounted app as well: "
                f"<mounted app>.dependency_overrides[{label(key)}] = ...",
            )
        return needed

    def _lookalikes(self, scan: AppScan, key: Any, used_by: list[str]) -> list[dict[str, Any]]:
        """Routes of ``scan`` that are not overridden although they use a lookalike of
        ``key`` (a wrapper of it, the function of a reloaded module, ...)."""
        found: dict[int, dict[str, Any]] = {}
        for use in scan.uses:
            if use.overridden:
                continue
            known = found.get(id(use.call))
            if known is not None:
                known["used_by"].append(use.where)
                continue
            reason = why_alike(key, use.call)
            if reason is None:
                continue
            found[id(use.call)] = {
                "object": use.call,
                "shown": use.shown,
                "callable": label(use.call),
                "site": origin(use.call),
                "reason": reason,
                "used_by": [use.where],
            }
        for alike in found.values():
            if used_by:
                served = (
                    f"the override of {self._named(key)} on {_app_name(scan)} serves "
                    f"{', '.join(used_by)}, but"
                )
            else:
                served = (
                    f"the override key {self._named(key)} on {_app_name(scan)} is used by no "
                    "route, but"
                )
            self._problem(
                OVERRIDE_IDENTITY_MISMATCH,
                f"{served} it looks like {self._named(alike['object'])} used by "
                f"{', '.join(alike['used_by'])}: {alike['reason']}; FastAPI finds overrides "
                "by identity, so that dependency is not overridden",
                f"Key the override on the very object the route uses: import "
                f"{alike['shown']} from the module the route imports it from, and do not "
                "reload that module or re-create the dependency between the override and the "
                "request.",
            )
        return [
            {k: v for k, v in alike.items() if k not in ("object", "shown")}
            for alike in found.values()
        ]

    def _route_lookalikes(self) -> None:
        """Per route: each dependency that is a wrapper or lookalike of another object
        other routes use, or an override key of its app, goes in the route's
        ``lookalikes``: an override keyed on one of the two does not reach the other.
        Between two used objects, the one fewer routes use is reported (both on a tie)."""
        groups: dict[int, tuple[Any, list[Use]]] = {}
        for scan in self.scans:
            for use in scan.uses:
                groups.setdefault(id(use.call), (use.call, []))[1].append(use)
        entries = list(groups.values())
        for index, (call, uses) in enumerate(entries):
            for other, other_uses in entries[index + 1 :]:
                if len(uses) <= len(other_uses):
                    self._note_alike(uses, other, other_uses, overridden=False)
                if len(other_uses) <= len(uses):
                    self._note_alike(other_uses, call, uses, overridden=False)
        for scan in self.scans:
            keys = list(overrides_of(scan.app))
            for use in scan.uses:
                if use.overridden:
                    continue
                for key in keys:
                    self._note_alike([use], key, [], overridden=True)

    def _note_alike(
        self, uses: list[Use], other: Any, other_uses: list[Use], *, overridden: bool
    ) -> None:
        if same_key(other, uses[0].call):  # equal keys: FastAPI's lookup finds either
            return
        reason = why_alike(other, uses[0].call)
        if reason is None:
            return
        other_label, other_site = label(other), origin(other)
        for use in uses:
            entries = use.route["lookalikes"]
            entry = next(
                (
                    e
                    for e in entries
                    if (e["dependency"], e["looks_like"], e["looks_like_site"])
                    == (use.node["name"], other_label, other_site)
                ),
                None,
            )
            if entry is None:
                entry = {
                    "dependency": use.node["name"],
                    "callable": use.shown,
                    "looks_like": other_label,
                    "looks_like_site": other_site,
                    "used_by": [],
                    "override_key": False,
                    "reason": reason,
                }
                entries.append(entry)
            entry["override_key"] = entry["override_key"] or overridden
            for place in dict.fromkeys(u.where for u in other_uses):
                if place not in entry["used_by"]:
                    entry["used_by"].append(place)

    def _other_app(self, app: Any) -> dict[str, Any]:
        """An app created while loading that is not the target nor mounted in it."""
        from depstrace.fastapi import app_id, app_origin, app_title

        ident = app_id(app)
        site, phase = app_origin(ident) or (None, None)
        overrides = []
        name = f"{app_title(app)!r} ({ident}, created at {site or '?'})"
        for key, value in list(overrides_of(app).items()):
            places = [
                u.where
                for scan in self.scans
                for u in scan.uses
                if not u.overridden and same_key(key, u.call)
            ]
            overrides.append(
                {
                    "key": label(key),
                    "key_site": origin(key),
                    "value": label(value),
                    "value_site": origin(value),
                    "needed_by_target": places,
                }
            )
            if places:
                self._problem(
                    OVERRIDE_NOT_VISIBLE,
                    f"the override of {self._named(key)} is registered on another app {name}, "
                    f"not on the app that serves {', '.join(places)}",
                    "Override on the app instance the tests call (app.dependency_overrides), "
                    "or build the test client from the same create_app() result.",
                )
        return {
            "id": ident,
            "title": app_title(app),
            "created_at": site,
            "created_phase": phase,
            "overrides": overrides,
        }

    # -- engines --------------------------------------------------------------------------

    def note_module(self, module: Any) -> None:
        name = getattr(module, "__name__", None)
        if not isinstance(name, str) or name in self.modules or name.split(".")[0] == "depstrace":
            return
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or os.path.abspath(file).startswith(library_dirs()):
            return
        self.modules[name] = module

    def _engines(self) -> list[dict[str, Any]]:
        from depstrace import sqlalchemy as probe

        reachable: dict[str, list[str]] = {}
        if "sqlalchemy" in sys.modules:
            for name, module in sorted(self.modules.items()):
                for attribute, value in list(vars(module).items()):
                    if not type(value).__module__.startswith("sqlalchemy"):
                        continue
                    engine = probe.engine_of(value)
                    if engine is not None:
                        info = probe.registry.lookup(engine)
                        reachable.setdefault(info.id, []).append(f"{name}.{attribute}")
        for holders in reachable.values():
            holders.sort()
        engines = []
        for info in probe.registry.known():
            is_test = self._is_test(info.url)
            env_vars = list(getattr(info, "env_vars", ()))
            engines.append(
                {
                    "id": info.id,
                    "url": info.url,
                    "backend": info.backend,
                    "driver": info.driver,
                    "database": info.database,
                    "host": info.host,
                    "port": info.port,
                    "created_at": info.created_at,
                    "created_phase": info.created_phase,
                    "reachable_as": reachable.get(info.id, []),
                    "env_vars": env_vars,
                    "is_test": is_test,
                }
            )
            if not is_test:
                created = (
                    f"created at {info.created_at} during {info.created_phase}"
                    if info.created_at
                    else "created before depstrace was enabled"
                )
                names = reachable.get(info.id)
                via = f", reachable as {', '.join(names)}" if names else ""
                env = f", its URL is the value of {', '.join(env_vars)}" if env_vars else ""
                self._problem(
                    WRONG_DB,
                    f"engine {info.id} ({info.url}), {created}{via}{env}, is not a test "
                    f"database by the rule: {self.rule.describe()}",
                    "Build the engine from the test configuration (in a fixture, or from an "
                    "environment variable the tests set before importing the app); if this "
                    f"is a test database, say so with --test-db or {ENV_VAR}.",
                )
        return engines

    def _is_test(self, url: str) -> bool:
        try:
            return self.rule.matches(url)
        except Exception:  # a user callable rule failed: count it as not a test database
            return False

    def _named(self, obj: Any) -> str:
        """``module:qualname (defined at file:line, held as mod.name)`` for messages."""
        facts = []
        site = origin(obj)
        if site:
            facts.append(f"defined at {site}")
        held = self._held_as(obj)
        if held:
            facts.append(f"held as {', '.join(held)}")
        return f"{label(obj)} ({'; '.join(facts)})" if facts else label(obj)

    def _held_as(self, obj: Any) -> list[str]:
        """Module globals of the app's modules that are ``obj`` (where it was imported)."""
        names = []
        for module_name, module in sorted(self.modules.items()):
            for name, value in list(vars(module).items()):
                if value is obj:
                    names.append(f"{module_name}.{name}")
        return names[:4]

    def _problem(self, code: str, message: str, hint: str) -> None:
        self.problems.append({"code": code, "message": message, "hint": hint})


def _app_name(scan: AppScan) -> str:
    return f"{scan.title!r} ({scan.ident})"


# --- text ------------------------------------------------------------------------------


def text_lines(report: dict[str, Any]) -> list[str]:
    """The report as the lines ``depstrace doctor`` prints."""
    lines = [f"depstrace doctor {report['target']}", ""]
    lines += _app_lines(report["app"], indent="")
    for other in report["other_apps"]:
        lines += ["", f"other app {_app_head(other)}"]
        for entry in other["overrides"]:
            needed = entry["needed_by_target"]
            state = f"needed by {', '.join(needed)}" if needed else "not needed by the target app"
            lines.append(f"  override {_override_head(entry)}: {state}")
    lines += ["", f"engines (test database: {report['test_db_rule']}):"]
    if not report["engines"]:
        lines.append("  none known")
    for engine in report["engines"]:
        created = (
            f"created at {engine['created_at']} during {engine['created_phase']}"
            if engine["created_at"]
            else "created before depstrace was enabled"
        )
        verdict = "test database" if engine["is_test"] else "NOT a test database"
        lines.append(f"  {engine['id']} {engine['url']}  {created}  {verdict}")
        if engine["reachable_as"]:
            lines.append(f"      reachable as {', '.join(engine['reachable_as'])}")
        if engine["env_vars"]:
            lines.append(f"      URL equals environment variable {', '.join(engine['env_vars'])}")
    problems = report["problems"]
    lines.append("")
    if not problems:
        lines.append("no problems found")
        return lines
    lines.append(f"problems ({len(problems)}):")
    for problem in problems:
        lines.append(f"  {problem['code']}: {problem['message']}")
        lines.append(f"      fix: {problem['hint']}")
    return lines


def _app_head(doc: dict[str, Any]) -> str:
    created = (
        f"created at {doc['created_at']} during {doc['created_phase']}"
        if doc["created_at"]
        else "creation site unknown (created before depstrace was enabled)"
    )
    return f"{doc['title']!r} ({doc['id']}), {created}"


def _override_head(entry: dict[str, Any]) -> str:
    key = entry["key"] + (f" ({entry['key_site']})" if entry["key_site"] else "")
    value = entry["value"] + (f" ({entry['value_site']})" if entry["value_site"] else "")
    return f"{key} -> {value}"


def _app_lines(doc: dict[str, Any], indent: str) -> list[str]:
    lines = [f"{indent}app {_app_head(doc)}"]
    lines.append(f"{indent}  routes:" if doc["routes"] else f"{indent}  routes: none")
    for route in doc["routes"]:
        verb = ",".join(route["methods"]) or route["kind"].upper()
        endpoint = route["endpoint"] or "?"
        site = f"  {route['endpoint_site']}" if route["endpoint_site"] else ""
        lines.append(f"{indent}    {verb} {route['path']}  {endpoint}{site}")
        lines += _dependency_lines(route["dependencies"], indent + "      ")
        for alike in route["lookalikes"]:
            lines.append(f"{indent}      ! {_alike_line(alike)}")
    for kind in doc["unexamined_routes"]:
        lines.append(f"{indent}    ? {kind}: a route type depstrace cannot look into")
    for mount in doc["mounts"]:
        if mount["app"] is None:
            what = (
                f"the app {mount['same_as']}, listed above"
                if mount["same_as"]
                else f"{mount['app_type']} (not a FastAPI app)"
            )
            lines.append(f"{indent}  mount {mount['path']}: {what}")
            continue
        lines.append(
            f"{indent}  mount {mount['path']}: own overrides provider: overrides on the parent "
            "do not apply"
        )
        lines += _app_lines(mount["app"], indent + "    ")
    if not doc["overrides"]:
        lines.append(f"{indent}  overrides: none")
        return lines
    lines.append(f"{indent}  overrides:")
    for entry in doc["overrides"]:
        if entry["used_by"]:
            state = f"used by {', '.join(entry['used_by'])}"
        elif entry["needed_by_mounted_apps"]:
            state = "UNUSED here, needed by mounted " + "; ".join(
                f"{need['app']} at {need['mount_path']}: {', '.join(need['used_by'])}"
                for need in entry["needed_by_mounted_apps"]
            )
        elif entry["lookalikes"]:
            state = "UNUSED, looks like " + "; ".join(
                f"{alike['callable']} ({alike['reason']})" for alike in entry["lookalikes"]
            )
        elif entry.get("unknown_routes"):
            state = (
                "not used by the routes examined; "
                + ", ".join(entry["unknown_routes"])
                + " could not be examined"
            )
        else:
            state = "UNUSED by every route"
        lines.append(f"{indent}    {_override_head(entry)}: {state}")
    return lines


def _alike_line(alike: dict[str, Any]) -> str:
    other = alike["looks_like"] + (
        f" ({alike['looks_like_site']})" if alike["looks_like_site"] else ""
    )
    whose = [f"used by {', '.join(alike['used_by'])}"] if alike["used_by"] else []
    if alike["override_key"]:
        whose.append("an override key of this app")
    whose_text = " and ".join(whose)
    return (
        f"{alike['dependency']}: {alike['callable']} looks like {other}, {whose_text}: "
        f"{alike['reason']}; an override keyed on one does not reach the other"
    )


def _dependency_lines(nodes: list[dict[str, Any]], indent: str) -> list[str]:
    lines = []
    for node in nodes:
        name, facts = name_parts(node["callable"], node["site"], node["alias"])
        if facts:
            text = f"{indent}{node['name']}: {name} ({', '.join(facts)})"
        else:
            site = f"  {node['site']}" if node["site"] else ""
            text = f"{indent}{node['name']}: {name}{site}"
        override = node["override"]
        if override is not None:
            where = f" ({override['site']})" if override["site"] else ""
            text += f"  -> override {override['callable']}{where}"
        lines.append(text)
        lines += _dependency_lines(node["dependencies"], indent + "  ")
    return lines
