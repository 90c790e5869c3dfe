"""Tests for depstrace._testdb: which databases count as test databases."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from depstrace._testdb import TestDatabaseRule

HOW_TO = "write re:<python regex> or an fnmatch glob such as *test*"
ACCEPTED = (
    "None, a str of comma-separated patterns (re:<regex> or fnmatch globs), a compiled "
    "re.Pattern, a callable (redacted_url: str) -> bool, a SQLAlchemy URL, Engine or "
    "AsyncEngine, or a TestDatabaseRule"
)


def is_test(url: str) -> bool:
    """A user-style callable rule: databases on the host ``testhost``."""
    return "@testhost/" in url


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A real SQLite engine on ``test.db`` inside the test's temporary directory."""
    engine = sqlalchemy.create_engine("sqlite:///" + str(tmp_path / "test.db"))
    yield engine
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////tmp/pytest-of-root/test_x0/test.db", True),
        ("sqlite:////tmp/pytest-of-root/test_x0/prod.db", False),
        ("sqlite+aiosqlite:///./my_TEST_data.db", True),
        ("sqlite://", True),
        ("sqlite:///:memory:", True),
        ("sqlite+aiosqlite:///file::memory:?cache=shared", True),
        ("postgresql+asyncpg://u:pw@h:5432/app_test", True),
        ("postgresql://u:pw@testhost/prod", False),
        ("postgresql://u:test@h/prod", False),
        ("postgresql://h/db?application_name=test", False),
        ("not a url at all", False),
        ("", False),
    ],
)
def test_default_rule_strings(url: str, expected: bool) -> None:
    """The default rule looks only at the database name or SQLite in-memory mode."""
    assert TestDatabaseRule().matches(url) is expected


def test_default_rule_tmp_path(tmp_path: Path) -> None:
    """A prod.db inside a pytest temporary directory named test_... is not a test database."""
    rule = TestDatabaseRule()
    assert "test" in str(tmp_path)
    assert not rule.matches("sqlite:///" + str(tmp_path / "prod.db"))
    assert rule.matches("sqlite:///" + str(tmp_path / "test.db"))


def test_default_rule_sqlalchemy_urls() -> None:
    """SQLAlchemy URL objects are judged by their database and backend."""
    rule = TestDatabaseRule()
    assert rule.matches(make_url("postgresql://u:p@h/shop_test"))
    assert not rule.matches(make_url("postgresql://u:test@h/shop"))
    assert rule.matches(make_url("sqlite://"))
    assert not rule.matches(URL.create("sqlite", database="/tmp/test_x0/prod.db"))


@pytest.mark.parametrize(
    ("spec", "url", "expected"),
    [
        ("*_test", "postgresql://h/app_test", True),
        ("*_test", "postgresql://h/app_test_copy", False),
        ("prod.db", "sqlite:////tmp/prod.db", True),
        ("sqlite*", "sqlite:////srv/prod.db", True),
        ("*TEST*", "postgresql://h/app_test", False),
        ("re:^sqlite", "sqlite:////srv/prod.db", True),
        ("re:^sqlite", "postgresql://h/db", False),
        ("re:^shop$", "postgresql://h/shop", True),
        ("re:@ci-db:", "postgresql://u:p@ci-db:5432/shop", True),
        ("re:hunter2", "postgresql://u:hunter2@h/shop", False),
        (" *_test , re:^sqlite ", "sqlite:////srv/prod.db", True),
        (" *_test , re:^sqlite ", "postgresql://h/app_test", True),
        (" *_test , re:^sqlite ", "postgresql://h/prod", False),
        ("*", "not a url", True),
    ],
)
def test_pattern_rules(spec: str, url: str, expected: bool) -> None:
    """Globs and re: patterns match the redacted URL or the database name."""
    assert TestDatabaseRule(spec).matches(url) is expected


def test_compiled_pattern_rule() -> None:
    """A compiled regex keeps its flags and searches the redacted URL and database name."""
    rule = TestDatabaseRule.coerce(re.compile(r"_test$", re.IGNORECASE))
    assert rule.matches("postgresql://h/APP_TEST")
    assert not rule.matches("postgresql://h/app")
    assert rule.describe() == "pattern re:_test$"


def test_callable_rule_sees_only_redacted_url() -> None:
    """A callable receives the redacted URL string and its result decides."""
    seen: list[str] = []

    def record(url: str) -> bool:
        seen.append(url)
        return url.endswith("/ok")

    rule = TestDatabaseRule.coerce(record)
    assert rule.matches("postgresql://u:s3cret@h/ok")
    assert not rule.matches(make_url("postgresql://u:s3cret@h/no?password=x"))
    assert seen == ["postgresql://u:***@h/ok", "postgresql://u:***@h/no?password=***"]


def test_callable_rule_errors_propagate() -> None:
    """An exception raised by a user callable is the user's bug and is not swallowed."""

    def broken(url: str) -> bool:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        TestDatabaseRule(broken).matches("sqlite://")


def test_url_spec_rule() -> None:
    """A SQLAlchemy URL spec matches the same backend, host, port and database."""
    rule = TestDatabaseRule.coerce(make_url("postgresql+asyncpg://u:pw@DB.example:5432/shop"))
    assert rule.matches("postgresql://other:x@db.example:5432/shop")
    assert rule.matches(make_url("postgresql+psycopg://u@db.example/shop"))
    assert not rule.matches("postgresql://u@db.example:5433/shop")
    assert not rule.matches("postgresql://u@db.example:5432/shop_prod")
    assert not rule.matches("mysql://u@db.example:5432/shop")
    assert not rule.matches("not a url")
    assert not rule.matches(42)
    assert rule.describe() == "URL postgresql+asyncpg://u:***@DB.example:5432/shop"


def test_engine_spec_rule(tmp_path: Path, sqlite_engine: Engine) -> None:
    """An Engine spec matches its own SQLite file and no other."""
    rule = TestDatabaseRule.coerce(sqlite_engine)
    other = sqlalchemy.create_engine("sqlite:///" + str(tmp_path / "other.db"))
    try:
        assert rule.matches(sqlite_engine.url)
        assert rule.matches("sqlite+pysqlite:///" + str(tmp_path / "test.db"))
        assert not rule.matches(other.url)
        assert not rule.matches("sqlite://")
    finally:
        other.dispose()
    assert rule.describe() == "engine sqlite:///" + str(tmp_path / "test.db")


def test_async_engine_spec_rule(tmp_path: Path) -> None:
    """An AsyncEngine spec is compared through its sync engine's URL."""
    engine = create_async_engine("sqlite+aiosqlite:///" + str(tmp_path / "test.db"))
    try:
        rule = TestDatabaseRule.coerce(engine)
        assert rule.matches("sqlite:///" + str(tmp_path / "test.db"))
        assert not rule.matches("sqlite:///" + str(tmp_path / "prod.db"))
    finally:
        asyncio.run(engine.dispose())


def test_memory_url_spec_rule() -> None:
    """An in-memory SQLite URL spec matches other in-memory SQLite URLs."""
    rule = TestDatabaseRule.coerce(make_url("sqlite://"))
    assert rule.matches("sqlite:///:memory:")
    assert not rule.matches("sqlite:////tmp/test.db")


def test_coerce_returns_rules_unchanged() -> None:
    """Coercing a rule returns the very same object; None gives the default rule."""
    rule = TestDatabaseRule("*test*")
    assert TestDatabaseRule.coerce(rule) is rule
    assert TestDatabaseRule(rule).describe() == rule.describe()
    default = 'default rule (database name contains "test", or SQLite in memory)'
    assert TestDatabaseRule.coerce(None).describe() == default
    assert TestDatabaseRule.coerce("  ").describe() == default


@pytest.mark.parametrize(("spec", "type_name"), [(42, "int"), (b"*test*", "bytes")])
def test_coerce_rejects_other_types(spec: object, type_name: str) -> None:
    """Unsupported specs raise a TypeError naming the type and the accepted kinds."""
    with pytest.raises(TypeError) as excinfo:
        TestDatabaseRule.coerce(spec)
    assert str(excinfo.value) == f"test database spec must be {ACCEPTED}; got {type_name}"


@pytest.mark.parametrize("spec", ["*test*,", "a,,b", "re:", " , "])
def test_empty_patterns_are_rejected(spec: str) -> None:
    """An empty item in a pattern list raises a ValueError naming it."""
    bad = "re:" if spec == "re:" else ""
    with pytest.raises(ValueError, match="is empty") as excinfo:
        TestDatabaseRule(spec)
    assert str(excinfo.value) == f"DEPSTRACE_TEST_DB pattern {bad!r} is empty; {HOW_TO}"


def test_invalid_regex_is_rejected() -> None:
    """An invalid re: pattern raises a ValueError explaining how to write a valid one."""
    with pytest.raises(re.error) as regex_error:
        re.compile("(")
    with pytest.raises(ValueError, match="not a valid regular expression") as excinfo:
        TestDatabaseRule.from_env({"DEPSTRACE_TEST_DB": "*test*, re:("})
    assert str(excinfo.value) == (
        "DEPSTRACE_TEST_DB pattern 're:(' is not a valid regular expression: "
        f"{regex_error.value}; {HOW_TO}"
    )


def test_source_names_the_origin() -> None:
    """The source keyword replaces DEPSTRACE_TEST_DB in messages and descriptions."""
    assert TestDatabaseRule("*x*", source="--test-db").describe() == "--test-db patterns: *x*"
    with pytest.raises(ValueError, match=r"^--test-db pattern '' is empty"):
        TestDatabaseRule.coerce(",", source="--test-db")


@pytest.mark.parametrize(
    ("environ", "description"),
    [
        ({}, 'default rule (database name contains "test", or SQLite in memory)'),
        (
            {"DEPSTRACE_TEST_DB": ""},
            'default rule (database name contains "test", or SQLite in memory)',
        ),
        (
            {"DEPSTRACE_TEST_DB": " *test*, re:^sqlite"},
            "DEPSTRACE_TEST_DB patterns: *test*, re:^sqlite",
        ),
        ({"OTHER": "*prod*"}, 'default rule (database name contains "test", or SQLite in memory)'),
    ],
)
def test_from_env(environ: dict[str, str], description: str) -> None:
    """from_env reads DEPSTRACE_TEST_DB and falls back to the default rule."""
    assert TestDatabaseRule.from_env(environ).describe() == description


def test_describe_callable_and_repr() -> None:
    """A callable is described by its module and qualified name; repr shows the description."""
    rule = TestDatabaseRule.coerce(is_test)
    assert rule.describe() == f"callable {is_test.__module__}:is_test"
    assert rule.matches("postgresql://u:p@testhost/prod")
    assert repr(rule) == f"TestDatabaseRule('callable {is_test.__module__}:is_test')"


def test_rule_is_not_collected_by_pytest() -> None:
    """TestDatabaseRule opts out of pytest collection despite its name."""
    assert TestDatabaseRule.__test__ is False
