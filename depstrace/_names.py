"""How a recorded dependency is named in words people read (account, findings).

Pure functions over the ``dependencies[]`` dicts of a request record
(docs/format.md), so a trace file read back is named exactly like a live run.

A callable is named by its ``module:qualname`` when that name finds the very
object (plain functions, classes, decorators applied in place): the common case
reads as before.  When it does not — a ``functools.wraps`` wrapper carries the
name of the function it wraps, a partial or an instance has no name of its own
— it is named by the ``module.attribute`` that holds it (``*_ref``) with its own
definition site and what it wraps, so a fix that says "override X" points at
the object the route really used.
"""

from __future__ import annotations

from typing import Any

Node = dict[str, Any]

__all__ = ["callable_label", "chain_label", "name_parts", "node_label", "via_node"]


def callable_label(
    node: Node, side: str = "resolved", *, inline: bool = False, site: bool = False
) -> str:
    """The ``original`` or ``resolved`` callable of ``node`` named so it points at
    the object: ``app.deps:get_db``, or for a wrapper ``app.main.timed_db
    (defined at app/timing.py:12, wraps app.deps:get_db at app/deps.py:9)``;
    ``inline`` leaves out the parentheses (for text already in parentheses),
    ``site`` adds the definition site to a plain name too."""
    name, facts = _parts(node, side)
    if not facts and site:
        facts = [node.get(f"{side}_site") or "site unknown"]
    if not facts:
        return name
    return f"{name}, {', '.join(facts)}" if inline else f"{name} ({', '.join(facts)})"


def node_label(node: Node) -> str:
    """``name=callable (not overridden)`` or ``name=override (override of callable)``,
    with the facts that make a wrapper's name point at it."""
    name, facts = _parts(node, "resolved")
    if node["overridden"]:
        state = f"override of {callable_label(node, 'original')}"
        if node.get("override_site"):
            state += f", set at {node['override_site']}"
    else:
        state = "not overridden"
    details = f"{', '.join(facts)}; {state}" if facts else state
    return f"{node['name']}={name} ({details})"


def _parts(node: Node, side: str) -> tuple[str, list[str]]:
    return name_parts(node[side], node.get(f"{side}_site"), node.get(f"{side}_alias"))


def name_parts(
    claimed: str, site: str | None, alias: dict[str, Any] | None
) -> tuple[str, list[str]]:
    """``(name, facts)`` for a callable: its ``module:qualname`` and no facts when
    that finds it (no ``alias``); else the ``module.attribute`` that holds it (or
    the name it carries, when none does) and what tells it apart: its own site
    and what it wraps, or, for an instance or a replaced function, the name it
    carries."""
    if alias is None:
        return claimed, []
    ref, wraps = alias.get("ref"), alias.get("wraps")
    facts = []
    if wraps is not None:
        wraps_site = alias.get("wraps_site")
        if site and site != wraps_site:
            facts.append(f"defined at {site}")
        facts.append(f"wraps {wraps}" + _at(wraps_site))
    elif ref is not None:  # an instance, or a function a reload replaced under the same name
        facts.append(claimed + _at(site))
    return ref or claimed, facts


def chain_label(start: Node | None, nodes: dict[int, Node]) -> str:
    """``start`` and its parents up to the endpoint, innermost first, each with
    :func:`node_label`, joined by ``<-``."""
    parts = []
    node = start
    seen: set[int] = set()
    while node is not None and node["id"] not in seen:
        seen.add(node["id"])
        parts.append(node_label(node))
        node = nodes.get(node["parent"]) if node["parent"] is not None else None
    return " <- ".join(parts)


def via_node(db: dict[str, Any], nodes: dict[int, Node]) -> Node | None:
    """The dependency credited with a ``databases[]`` entry (``via_id``; traces
    written before it existed: the first node with its ``via`` name and engine)."""
    if db.get("via") is None:
        return None
    ident = db.get("via_id")
    if ident is not None and ident in nodes:
        return nodes[ident]
    return next(
        (
            n
            for n in nodes.values()
            if n["name"] == db["via"] and n.get("engine_id") == db["engine_id"]
        ),
        None,
    )


def _at(site: str | None) -> str:
    return f" at {site}" if site else ""
