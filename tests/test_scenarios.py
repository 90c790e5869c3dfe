"""The scenario suite: one small app and its own test suite per root cause.

Each directory under ``tests/scenarios/`` is copied into a fresh pytester
directory and run in a subprocess with ``DEPSTRACE=1``.  Its ``expected.json``
says exactly which findings must come out of the trace and how its own tests
end; anything else that fires fails the scenario::

    {
      "description": "what the bug is, in one sentence",
      "requires": ["postgres"],             # optional
      "env": {"DATABASE_URL": "sqlite:///{data}/prod.db"},   # optional, see below
      "outcomes": {"passed": 2, "failed": 1},
      "findings": [
        {"code": "WRONG_DB", "test": "test_app.py::test_stats", "path": "/stats"},
        {"code": "OVERRIDE_UNUSED", "test": "test_app.py::test_items", "path": null}
      ]
    }

``test`` is the pytest node id (null outside any test); ``path`` is the
request path for a finding on a request, null for a finding of the run.
The scenario's code reads ``SCENARIO_DATA`` (a scratch directory for SQLite
files) and, with ``"requires": ["postgres"]``, ``SCENARIO_PG``
(``user@host:port``); ``env`` values may use ``{data}`` and ``{pg}``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from depstrace._jsonl import read_records

SCENARIOS = Path(__file__).parent / "scenarios"
NAMES = sorted(p.name for p in SCENARIOS.iterdir() if (p / "expected.json").is_file())


def _findings(trace: Path) -> list[tuple[str, str | None, str | None]]:
    found = []
    for record in read_records(trace):
        if record["type"] == "request":
            found += [(f["code"], record["test"], record["path"]) for f in record["findings"]]
        elif record["type"] == "finding":
            found.append((record["code"], record.get("test"), None))
    return sorted(found, key=repr)


def _expected(spec: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    return sorted(((f["code"], f["test"], f["path"]) for f in spec["findings"]), key=repr)


@pytest.mark.parametrize("name", NAMES)
def test_scenario(
    name: str,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    source = SCENARIOS / name
    spec = json.loads((source / "expected.json").read_text())
    pg = ""
    if "postgres" in spec.get("requires", []):
        # skips (or fails under DEPSTRACE_REQUIRE_PG=1) without a server
        urls = request.getfixturevalue("postgres")
        pg = urls["psycopg_test"].split("://", 1)[1].rsplit("/", 1)[0]
    for path in source.iterdir():
        if path.name in ("expected.json", "__pycache__"):
            continue
        target = pytester.path / path.name
        if path.is_dir():
            shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, target)
    data = pytester.path / "data"
    data.mkdir()
    trace = pytester.path / "trace.jsonl"
    for key in ("DEPSTRACE_TEST_DB", "DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("DEPSTRACE_FILE", str(trace))
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.setenv("SCENARIO_PG", pg)  # "user@host:port" when required
    for key, value in spec.get("env", {}).items():
        monkeypatch.setenv(key, value.format(data=data, pg=pg))
    monkeypatch.setenv("PYTHONPATH", str(pytester.path), prepend=os.pathsep)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    output = result.stdout.str()
    result.assert_outcomes(**spec["outcomes"])
    found, expected = _findings(trace), _expected(spec)
    unexpected = [f for f in found if f not in expected]
    missing = [f for f in expected if f not in found]
    assert found == expected, f"unexpected: {unexpected}\nmissing: {missing}\n\n{output}"
