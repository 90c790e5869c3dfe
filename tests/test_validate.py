"""depstrace._validate: the compiled check that passes good records agrees with the
walk that names a bad record's field, for every field of every record type."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from depstrace._validate import REQUIRED, Spec, problem_with


def _example(spec: Spec) -> Any:
    """A smallest value that satisfies ``spec`` (lists get one item)."""
    if isinstance(spec, dict):
        return {name: _example(inner) for name, inner in spec.items()}
    if isinstance(spec, list):
        return [_example(spec[0])]
    kind = spec[0]
    return {str: "x", int: 1, bool: True, dict: {}, None: None}[kind]


def _paths(spec: Spec, prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Spec]]:
    """Every field below ``spec`` as (path of keys and list indexes, its spec)."""
    if isinstance(spec, dict):
        found = []
        for name, inner in spec.items():
            found.append(((*prefix, name), inner))
            found += _paths(inner, (*prefix, name))
        return found
    if isinstance(spec, list):
        return _paths(spec[0], (*prefix, 0))
    return []


def _shown(path: tuple[Any, ...]) -> str:
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


CASES = [(kind, path, inner) for kind, spec in REQUIRED.items() for path, inner in _paths(spec)]


@pytest.mark.parametrize("kind", sorted(REQUIRED))
def test_a_good_record_has_no_problem(kind: str) -> None:
    assert problem_with({"type": kind, **_example(REQUIRED[kind])}) is None


@pytest.mark.parametrize(
    ("kind", "path", "inner"), CASES, ids=[f"{k}:{_shown(p)}" for k, p, _ in CASES]
)
def test_each_missing_or_mistyped_field_is_named(
    kind: str, path: tuple[Any, ...], inner: Spec
) -> None:
    good = {"type": kind, **_example(REQUIRED[kind])}
    missing = copy.deepcopy(good)
    parent = missing
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    assert problem_with(missing) == f'{kind} record: field "{_shown(path)}" is missing'
    wrong = copy.deepcopy(good)
    parent = wrong
    for key in path[:-1]:
        parent = parent[key]
    # A float fits no spec; True is no integer (JSON true is not a count).
    parent[path[-1]] = True if inner == (int,) else 1.5
    problem = problem_with(wrong)
    assert problem is not None
    assert problem.startswith(f'{kind} record: field "{_shown(path)}" should be ')
