"""Whether a record read back from a trace file has the fields the account reads.

A trace file can be damaged, hand-edited or written by another tool; a record
that lacks a field the account needs is reported with its line and field
(``trace.jsonl:7: request record: field "databases" is missing``) and left out,
instead of stopping the report with a ``KeyError``.  Only read-back records
are checked: records made by this process are right by construction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeAlias

# A field's spec: the JSON types it may hold (None for null), an object spec, or
# a one-element list holding the spec of every item.
Spec: TypeAlias = tuple[Any, ...] | dict[str, "Spec"] | list["Spec"]

_FINDING: dict[str, Spec] = {
    "code": (str,),
    "severity": (str,),
    "message": (str,),
    "hint": (str,),
}
_DATABASE: dict[str, Spec] = {
    "url": (str,),
    "engine_id": (str,),
    "is_test": (bool,),
    "statements": (int,),
    "via": (str, None),
}
_DEPENDENCY: dict[str, Spec] = {
    "id": (int,),
    "name": (str, None),
    "original": (str,),
    "resolved": (str,),
    "overridden": (bool,),
    "parent": (int, None),
    "engine_id": (str, None),
}
REQUIRED: dict[str, dict[str, Spec]] = {
    "request": {
        "id": (str,),
        "test": (str, None),
        "method": (str,),
        "path": (str,),
        "status": (int, None),
        "app": {"id": (str,), "title": (str, None)},
        "dependencies": [_DEPENDENCY],
        "databases": [_DATABASE],
        "findings": [_FINDING],
    },
    "finding": _FINDING,
    "guard": {
        "action": (str,),
        "operation": (str,),
        "url": (str,),
        "engine_id": (str,),
        "test": (str, None),
        "fixture": (dict, None),
        "request": (dict, None),
        "findings": [{"code": (str,)}],
    },
    "outside_calls": {
        "test": (str, None),
        "fixture": (dict, None),
        "calls": [{"target": (str,), "allowed": (bool,), "operations": (dict,)}],
    },
    "summary": {"internal_errors": (int,)},
    "workers": {"workers": [{"id": (str,), "problems": [(str,)]}]},
}

_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    dict: "an object",
    None: "null",
}
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode  # bound: tests patch json


def problem_with(record: dict[str, Any]) -> str | None:
    """What makes ``record`` unreadable for the account (its first bad field), or None.

    Every record of a report goes through here: a compiled check (exact JSON types,
    no field paths built) answers for the good ones; only a record it rejects is
    walked again to name the field."""
    kind = record["type"]
    spec = REQUIRED.get(kind)
    if spec is None or _VALID[kind](record):
        return None
    problem = _check(record, spec, "")
    return None if problem is None else f"{kind} record: {problem}"


def _compile(spec: Spec) -> Callable[[Any], bool]:
    """``spec`` as one predicate over a decoded JSON value (types compared exactly, as
    the decoder makes them: ``True`` is no integer)."""
    if isinstance(spec, dict):
        # Plain fields compare their type in place; only objects and lists call down.
        scalars = [
            (name, _kinds(inner)) for name, inner in spec.items() if isinstance(inner, tuple)
        ]
        nested = [
            (name, _compile(inner)) for name, inner in spec.items() if not isinstance(inner, tuple)
        ]

        def valid_object(value: Any) -> bool:
            if type(value) is not dict:
                return False
            for name, kinds in scalars:
                if name not in value or type(value[name]) not in kinds:
                    return False
            for name, valid in nested:  # noqa: SIM110
                if name not in value or not valid(value[name]):
                    return False
            return True

        return valid_object
    if isinstance(spec, list):
        valid_item = _compile(spec[0])
        return lambda value: type(value) is list and all(map(valid_item, value))
    kinds = _kinds(spec)
    return lambda value: type(value) in kinds


def _kinds(spec: tuple[Any, ...]) -> frozenset[type]:
    return frozenset(type(None) if kind is None else kind for kind in spec)


def _check(value: Any, spec: Spec, where: str) -> str | None:
    if isinstance(spec, dict):
        return _check_object(value, spec, where)
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f'field "{where}" should be a list, not {_show(value)}'
        problems = (_check(item, spec[0], f"{where}[{i}]") for i, item in enumerate(value))
        return next((p for p in problems if p is not None), None)
    if any(_is(value, kind) for kind in spec):
        return None
    expected = " or ".join(_NAMES[kind] for kind in spec)
    return f'field "{where}" should be {expected}, not {_show(value)}'


def _check_object(value: Any, spec: dict[str, Spec], where: str) -> str | None:
    if not isinstance(value, dict):
        return f'field "{where}" should be an object, not {_show(value)}'
    for name, inner in spec.items():
        path = f"{where}.{name}" if where else name
        if name not in value:
            return f'field "{path}" is missing'
        problem = _check(value[name], inner, path)
        if problem is not None:
            return problem
    return None


def _is(value: Any, kind: Any) -> bool:
    if kind is None:
        return value is None
    if kind is int:  # JSON true/false are not counts
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _show(value: Any) -> str:
    text = _encode(value)
    return text if len(text) <= 40 else text[:37] + "..."


_VALID: dict[str, Callable[[Any], bool]] = {kind: _compile(spec) for kind, spec in REQUIRED.items()}
