"""CI gates: fail a run on chosen finding codes (``--depstrace-fail-on``,
``depstrace report --fail-on``), naming the tests that made them.

Pure functions over the plain dicts of docs/format.md, so the pytest plugin and
``depstrace report`` over trace files give the same verdict with the same words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from depstrace._config import ConfigurationError
from depstrace.findings import (
    DB_OUTSIDE_REQUEST,
    DI_BYPASS,
    DUPLICATE_SESSION,
    ENGINE_FROM_ENV,
    LOOP_MISMATCH,
    OVERRIDE_IDENTITY_MISMATCH,
    OVERRIDE_LEAKED,
    OVERRIDE_NOT_VISIBLE,
    OVERRIDE_UNUSED,
    SESSION_NOT_COMMITTED,
    WRONG_DB,
)

Record = dict[str, Any]

# Every finding code of the public contract (DESIGN.md §2), EXTERNAL_CALL included.
CODES = (
    WRONG_DB,
    DI_BYPASS,
    OVERRIDE_IDENTITY_MISMATCH,
    OVERRIDE_NOT_VISIBLE,
    OVERRIDE_LEAKED,
    OVERRIDE_UNUSED,
    ENGINE_FROM_ENV,
    DB_OUTSIDE_REQUEST,
    LOOP_MISMATCH,
    SESSION_NOT_COMMITTED,
    DUPLICATE_SESSION,
    "EXTERNAL_CALL",
)
OUTSIDE_TESTS = "(outside any test)"  # the label of findings made at import or startup
SHOWN_TESTS = 20  # how many tests a gate names before "+N more"


def parse_codes(raw: str, *, source: str) -> tuple[str, ...]:
    """The codes of ``WRONG_DB,DI_BYPASS`` (any case, spaces allowed), in order, once each.

    ``source`` names where the value came from (``--depstrace-fail-on``,
    ``DEPSTRACE_FAIL_ON``) in the error an unknown or missing code raises.
    """
    codes = [part.strip().upper() for part in raw.split(",") if part.strip()]
    unknown = [code for code in codes if code not in CODES]
    if unknown or not codes:
        said = "no finding code"
        if unknown:
            said = f"unknown finding code{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
        raise ConfigurationError(
            f"{source}={raw!r}: {said}. Give one or more of, comma-separated: {', '.join(CODES)}."
        )
    return tuple(dict.fromkeys(codes))


def _label(record: Record) -> str:
    return record.get("test") or OUTSIDE_TESTS


def gated(
    requests: Iterable[Record], run_findings: Iterable[Record], codes: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Test (or :data:`OUTSIDE_TESTS`) -> {code: how many findings} for ``codes`` only."""
    wanted = set(codes)
    found: dict[str, dict[str, int]] = {}
    findings = [(_label(r), f) for r in requests for f in r["findings"]]
    findings += [(_label(f), f) for f in run_findings]
    for test, finding in findings:
        if finding["code"] in wanted:
            counts = found.setdefault(test, {})
            counts[finding["code"]] = counts.get(finding["code"], 0) + 1
    return found


def gate_lines(found: dict[str, dict[str, int]], codes: Sequence[str], *, option: str) -> list[str]:
    """What a failed gate says: the codes with their test counts, then one line per test.

    Empty when nothing in ``found``: a passed gate says nothing.
    """
    if not found:
        return []
    per_code = {code: sum(1 for counts in found.values() if code in counts) for code in codes}
    said = ", ".join(
        f"{code} in {n} test{'' if n == 1 else 's'}" for code, n in per_code.items() if n
    )
    lines = [f"depstrace: {option} {','.join(codes)} fails this run: {said}:"]
    for test, counts in list(found.items())[:SHOWN_TESTS]:
        lines.append(f"  {test}  {', '.join(f'{c} x{n}' for c, n in counts.items())}")
    if len(found) > SHOWN_TESTS:
        lines.append(f"  +{len(found) - SHOWN_TESTS} more tests")
    return lines
