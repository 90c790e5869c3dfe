"""``depstrace explain [CODE]``: the finding pages, offline, through ``depstrace.cli.main``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from depstrace import findings
from depstrace.cli import main
from depstrace.report import CAUSES, summary_lines

PAGES = Path(__file__).parent.parent / "docs" / "findings"
CODES = [
    "WRONG_DB",
    "DI_BYPASS",
    "OVERRIDE_IDENTITY_MISMATCH",
    "OVERRIDE_NOT_VISIBLE",
    "OVERRIDE_LEAKED",
    "OVERRIDE_UNUSED",
    "ENGINE_FROM_ENV",
    "DB_OUTSIDE_REQUEST",
    "LOOP_MISMATCH",
    "SESSION_NOT_COMMITTED",
    "DUPLICATE_SESSION",
    "EXTERNAL_CALL",
]


@pytest.mark.parametrize("code", ["WRONG_DB", "engine_from_env", " Di_Bypass "])
def test_explain_prints_the_page(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The code's page, exactly as docs/findings/<CODE>.md has it; the code in any case."""
    assert main(["explain", code]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == ((PAGES / f"{code.strip().upper()}.md").read_text(), "")


def test_explain_without_a_code_lists_every_code_with_its_cause(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One line per code, in the account's order, with the cause the account prints."""
    assert main(["explain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["Finding codes (depstrace explain CODE prints the page of one):", ""]
    assert [re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in lines[2:]] == [
        [code, CAUSES[code]] for code in CODES
    ]


def test_unknown_code_exits_2_and_lists_the_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """A code without a page is a usage error that lists the codes."""
    assert main(["explain", "WRONG_DATABASE"]) == 2
    assert capsys.readouterr() == (
        "",
        "depstrace explain: unknown finding code 'WRONG_DATABASE'; the codes are: "
        + ", ".join(CODES)
        + "\n",
    )


def test_every_code_has_a_page_and_a_cause() -> None:
    """The pages, the account's causes and the codes defined in findings.py are one set."""
    defined = {
        value
        for name, value in vars(findings).items()
        if name.isupper() and isinstance(value, str) and value == name
    }
    pages = {path.stem for path in PAGES.glob("*.md")}
    assert (pages, set(CAUSES)) == (defined, defined)


def test_the_account_points_at_depstrace_explain() -> None:
    """The "why" section names the command that prints each page, not a source path."""
    request = {
        "test": "t.py::test_a",
        "method": "GET",
        "path": "/a",
        "route": "/a",
        "status": 200,
        "app": {"id": "app1", "title": "a"},
        "dependencies": [],
        "databases": [],
        "findings": [{"code": "DUPLICATE_SESSION", "message": "m", "hint": "h"}],
    }
    lines = summary_lines([request], trace_file=None)
    assert lines[-2:] == [
        "why:",
        f"  DUPLICATE_SESSION x1  {CAUSES['DUPLICATE_SESSION']} (depstrace explain "
        "DUPLICATE_SESSION)",
    ]
