"""``depstrace report --test/--code/--db``: which records a selection keeps."""

from __future__ import annotations

import pytest

from depstrace._select import Selection, nodeid_matches


@pytest.mark.parametrize(
    ("nodeid", "pattern", "kept"),
    [
        ("tests/test_a.py::test_x", "tests/test_a.py", True),
        ("tests/test_a.py::test_x", "tests/test_a.py::test_x", True),
        ("tests/test_a.py::test_x[1-2]", "tests/test_a.py::test_x", True),
        ("tests/test_a.py::TestC::test_x", "tests/test_a.py::TestC", True),
        ("tests/api/test_a.py::test_x", "tests/api", True),
        ("tests/api/test_a.py::test_x", "tests/api/", True),
        ("tests/test_a.py::test_x", "*::test_x", True),
        ("tests/test_ab.py::test_x", "tests/test_a", False),
        ("tests/test_a.py::test_xy", "tests/test_a.py::test_x", False),
        ("tests/apix/test_a.py::test_x", "tests/api", False),
        (None, "tests/", False),
    ],
)
def test_nodeid_matches(nodeid: str | None, pattern: str, kept: bool) -> None:
    """A file, directory or node id keeps what is below it, never a longer name."""
    assert nodeid_matches(nodeid, pattern) is kept


def request(test: str, codes: list[str], urls: list[tuple[str, str]]) -> dict[str, object]:
    """A request record with findings of ``codes`` on databases ``(url, engine_id)``."""
    return {
        "type": "request",
        "test": test,
        "findings": [{"code": code} for code in codes],
        "databases": [{"url": url, "engine_id": ident} for url, ident in urls],
    }


PROD = ("postgresql://app:***@db/shop", "e2")
TEST = ("sqlite:///tmp/test.db", "e1")


def test_options_combine_and_values_repeat() -> None:
    """Values of one option are alternatives; different options must all match."""
    select = Selection.build(["tests/a.py", "tests/b.py"], ["WRONG_DB"], ["shop"])
    assert select is not None
    assert select(request("tests/a.py::t", ["WRONG_DB"], [PROD]))
    assert select(request("tests/b.py::t", ["WRONG_DB", "DI_BYPASS"], [TEST, PROD]))
    assert not select(request("tests/c.py::t", ["WRONG_DB"], [PROD]))
    assert not select(request("tests/a.py::t", ["DI_BYPASS"], [PROD]))
    assert not select(request("tests/a.py::t", ["WRONG_DB"], [TEST]))


def test_db_takes_engine_ids_globs_and_regexes() -> None:
    """--db e2, a glob over the URL or the database name, or re:REGEX."""
    for value in ("e2", "shop", "postgresql://*", "re:@db/"):
        select = Selection.build([], [], [value])
        assert select is not None
        assert select(request("t", [], [PROD])), value
        assert not select(request("t", [], [TEST])), value


def test_findings_tied_to_no_request_are_judged_by_their_own_fields() -> None:
    """A ``finding`` record matches by its test, code, url and engine id."""
    select = Selection.build(["tests/a.py"], ["DB_OUTSIDE_REQUEST"], ["e2"])
    assert select is not None
    finding = {"type": "finding", "test": "tests/a.py::t", "code": "DB_OUTSIDE_REQUEST"}
    assert select(finding | {"url": PROD[0], "engine_id": "e2"})
    assert not select(finding | {"url": TEST[0], "engine_id": "e1"})
    assert Selection.build([], [], []) is None


def test_bad_db_pattern_is_an_error() -> None:
    """An invalid regex is a ValueError naming --db (the CLI's usage error)."""
    with pytest.raises(ValueError, match=r"--db pattern 're:\(' is not a valid regular expression"):
        Selection.build([], [], ["re:("])
