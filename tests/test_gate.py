"""CI gates: parsing the codes, which tests a gate names, and its words."""

from __future__ import annotations

import pytest

from depstrace._config import ConfigurationError
from depstrace.gate import CODES, gate_lines, gated, parse_codes


def test_codes_parse_in_any_case_once_each() -> None:
    """Spaces, case and repeats do not matter; the order given is kept."""
    assert parse_codes(" di_bypass, WRONG_DB,,DI_BYPASS ", source="X") == ("DI_BYPASS", "WRONG_DB")
    assert parse_codes("EXTERNAL_CALL", source="X") == ("EXTERNAL_CALL",)


@pytest.mark.parametrize(
    ("raw", "said"),
    [(" , ", "no finding code"), ("WRONG, NOPE", "unknown finding codes WRONG, NOPE")],
)
def test_bad_codes_list_the_valid_ones(raw: str, said: str) -> None:
    """An empty list or an unknown code is an error that names the source and every code."""
    with pytest.raises(ConfigurationError) as raised:
        parse_codes(raw, source="DEPSTRACE_FAIL_ON")
    assert str(raised.value) == (
        f"DEPSTRACE_FAIL_ON={raw!r}: {said}. Give one or more of, comma-separated: "
        f"{', '.join(CODES)}."
    )


def test_gate_counts_per_test_and_names_findings_outside_tests() -> None:
    """Request findings count under their test, findings tied to no request under theirs
    (or "(outside any test)"); other codes are ignored."""
    requests = [
        {"test": "t::a", "findings": [{"code": "WRONG_DB"}, {"code": "DI_BYPASS"}]},
        {"test": "t::a", "findings": [{"code": "WRONG_DB"}]},
        {"test": "t::b", "findings": [{"code": "DUPLICATE_SESSION"}]},
    ]
    run_findings = [{"code": "DB_OUTSIDE_REQUEST", "test": None}]
    found = gated(requests, run_findings, ("WRONG_DB", "DB_OUTSIDE_REQUEST"))
    assert found == {"t::a": {"WRONG_DB": 2}, "(outside any test)": {"DB_OUTSIDE_REQUEST": 1}}
    assert gate_lines(found, ("WRONG_DB", "DB_OUTSIDE_REQUEST"), option="--fail-on") == [
        "depstrace: --fail-on WRONG_DB,DB_OUTSIDE_REQUEST fails this run: WRONG_DB in 1 test, "
        "DB_OUTSIDE_REQUEST in 1 test:",
        "  t::a  WRONG_DB x2",
        "  (outside any test)  DB_OUTSIDE_REQUEST x1",
    ]
    assert gate_lines({}, ("WRONG_DB",), option="--fail-on") == []


def test_gate_names_20_tests_then_counts_the_rest() -> None:
    """A gate over many tests stays short."""
    found = {f"t::{n}": {"WRONG_DB": 1} for n in range(25)}
    lines = gate_lines(found, ("WRONG_DB",), option="--fail-on")
    assert len(lines) == 22
    assert lines[0].endswith("WRONG_DB in 25 tests:")
    assert lines[-2:] == ["  t::19  WRONG_DB x1", "  +5 more tests"]
