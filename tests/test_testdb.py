"""Tests for depstrace._testdb: which databases count as test databases."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from hypothesis import assume, given
from hypothesis import strategies as st
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import create_async_engine

import depstrace
from depstrace._testdb import TestDatabaseRule, name_words

DEFAULT = (
    'default rule (a word of the database name starts with "test", as in shop_test or '
    "testdb; SQLite in memory or in a test run's temporary directories)"
)
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
        ("sqlite:////srv/data/test.db", True),
        ("sqlite:////srv/data/prod.db", False),
        ("sqlite:///test_app.db", True),
        ("sqlite:///app_test.sqlite3", True),
        ("sqlite+aiosqlite:///./my_TEST_data.db", True),
        ("sqlite:////srv/data/latest.db", False),
        ("sqlite:////srv/test/prod.db", False),
        ("sqlite://", True),
        ("sqlite:///:memory:", True),
        ("sqlite+aiosqlite:///file::memory:?cache=shared", True),
        ("postgresql+asyncpg://u:pw@h:5432/app_test", True),
        ("postgresql://h/test", True),
        ("postgresql://h/tests", True),
        ("postgresql://h/testing", True),
        ("postgresql://h/testdb", True),
        ("postgresql://h/test_shop", True),
        ("postgresql://h/shop_test", True),
        ("postgresql://h/myapp_test_gw0", True),
        ("postgresql://h/shop-test", True),
        ("postgresql://h/SHOP_TEST", True),
        ("postgresql://h/shopTest", True),
        ("postgresql://h/ShopTestDB", True),
        ("postgresql://h/shop_latest", False),
        ("postgresql://h/contest", False),
        ("postgresql://h/attestation", False),
        ("postgresql://h/latest", False),
        ("postgresql://h/LATEST", False),
        ("postgresql://h/protest_votes", False),
        ("mongodb://h:27017/shop_latest", False),
        ("mongodb://h:27017/shop_test", True),
        ("postgresql://u:pw@testhost/prod", False),
        ("postgresql://u:test@h/prod", False),
        ("postgresql://h/db?application_name=test", False),
        ("not a url at all", False),
        ("", False),
    ],
)
def test_default_rule_strings(url: str, expected: bool) -> None:
    """The default rule judges words of the database name, never a substring of it."""
    assert TestDatabaseRule().matches(url) is expected


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("myapp_test_gw0", ["myapp", "test", "gw0"]),
        ("shop-latest.db", ["shop", "latest", "db"]),
        ("ShopTestDB", ["Shop", "Test", "DB"]),
        ("APITest", ["API", "Test"]),
        ("db2Test", ["db2", "Test"]),
        ("__test__", ["test"]),
        ("contest", ["contest"]),
    ],
)
def test_name_words(name: str, words: list[str]) -> None:
    """Names split on non-alphanumerics and where the case changes."""
    assert name_words(name) == words


def test_default_rule_pytest_temp_dirs(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, prod_dir: Path
) -> None:
    """Any SQLite file under pytest's temporary directories is a test database; prod.db
    elsewhere is not."""
    rule = TestDatabaseRule()
    assert rule.matches("sqlite:///" + str(tmp_path / "prod.db"))
    assert rule.matches("sqlite+aiosqlite:///" + str(tmp_path / "sub" / "app.sqlite3"))
    shared = tmp_path_factory.mktemp("data") / "prod.db"
    assert rule.matches(make_url("sqlite:///" + str(shared)))
    assert not rule.matches("sqlite:///" + str(prod_dir / "prod.db"))
    assert rule.matches("sqlite:///" + str(prod_dir / "test.db"))
    # The clause is about SQLite files: a server database's name is all that counts.
    assert not rule.matches(f"postgresql://h/{tmp_path_factory.getbasetemp() / 'prod'}")


def test_default_rule_relative_and_symlinked_paths(
    tmp_path: Path, prod_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative SQLite paths are judged from the working directory, symlinks by their target."""
    rule = TestDatabaseRule()
    monkeypatch.chdir(tmp_path)
    assert rule.matches("sqlite:///prod.db")
    monkeypatch.chdir(prod_dir)
    assert not rule.matches("sqlite:///prod.db")
    link = prod_dir / "link"
    link.symlink_to(tmp_path, target_is_directory=True)
    assert rule.matches("sqlite:///" + str(link / "prod.db"))


def test_default_rule_given_basetemp(tmp_path: Path, prod_dir: Path) -> None:
    """With temp_dirs (pytest's --basetemp) only files under those directories count."""
    rule = TestDatabaseRule(temp_dirs=[prod_dir / "basetemp"])
    assert rule.matches("sqlite:///" + str(prod_dir / "basetemp" / "t0" / "prod.db"))
    assert not rule.matches("sqlite:///" + str(prod_dir / "basetemp2" / "prod.db"))
    assert not rule.matches("sqlite:///" + str(tmp_path / "prod.db"))
    assert rule.matches("sqlite:///" + str(tmp_path / "test.db"))
    assert TestDatabaseRule.from_env({}, temp_dirs=[str(tmp_path)]).matches(
        "sqlite:///" + str(tmp_path / "prod.db")
    )
    patterns = TestDatabaseRule.from_env({"DEPSTRACE_TEST_DB": "*_test"}, temp_dirs=[tmp_path])
    assert not patterns.matches("sqlite:///" + str(tmp_path / "prod.db"))


def test_default_rule_temp_root_override(prod_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PYTEST_DEBUG_TEMPROOT moves pytest's directories, and the rule follows it."""
    monkeypatch.setenv("PYTEST_DEBUG_TEMPROOT", str(prod_dir))
    rule = TestDatabaseRule()
    assert rule.matches("sqlite:///" + str(prod_dir / "pytest-of-ci/pytest-1/prod.db"))
    assert not rule.matches("sqlite:///" + str(prod_dir / "pytest-of-ci"))
    assert not rule.matches("sqlite:///" + str(prod_dir / "data/prod.db"))


def test_default_rule_outside_pytest(tmp_path: Path, prod_dir: Path) -> None:
    """In a process that never imported pytest, pytest's directories still count."""
    code = (
        "import sys\n"
        "from depstrace import TestDatabaseRule\n"
        "rule = TestDatabaseRule()\n"
        "print('pytest' in sys.modules, [rule.matches(u) for u in sys.argv[1:]])\n"
    )
    urls = [f"sqlite:///{tmp_path / 'prod.db'}", f"sqlite:///{prod_dir / 'prod.db'}"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DEPSTRACE")}
    result = subprocess.run(
        [sys.executable, "-c", code, *urls],
        capture_output=True,
        text=True,
        check=True,
        env=environ,
    )
    assert result.stdout == "False [True, False]\n"


def test_default_rule_sqlalchemy_urls(prod_dir: Path) -> None:
    """SQLAlchemy URL objects are judged by their database and backend."""
    rule = TestDatabaseRule()
    assert rule.matches(make_url("postgresql://u:p@h/shop_test"))
    assert not rule.matches(make_url("postgresql://u:test@h/shop"))
    assert not rule.matches(make_url("postgresql://u:p@h/shop_latest"))
    assert rule.matches(make_url("sqlite://"))
    assert not rule.matches(URL.create("sqlite", database="/srv/test_x0/prod.db"))
    assert not rule.matches(URL.create("sqlite", database=str(prod_dir / "prod.db")))


_SEPARATORS = st.sampled_from(["_", "-", ".", " ", "__", "$"])
_WORDS = st.one_of(
    st.sampled_from(["test", "tests", "testing", "testdb", "latest", "contest", "attestation"]),
    st.sampled_from(["shop", "app", "prod", "db", "copy", "gw0", "2024", "protest", "tst"]),
    st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True),
)


@given(st.lists(_WORDS, min_size=1, max_size=5), st.data())
def test_words_decide_by_property(words: list[str], data: st.DataObject) -> None:
    """Joined with separators, in any case, or camelCased: a test database exactly when a
    word starts with "test", for PostgreSQL names and SQLite file names alike."""
    expected = any(word.startswith("test") for word in words)
    separators = [data.draw(_SEPARATORS) for _ in words[1:]]
    joined = words[0] + "".join(sep + word for sep, word in zip(separators, words[1:], strict=True))
    camel = words[0] + "".join(word.capitalize() for word in words[1:])
    rule = TestDatabaseRule()
    for name in (joined, joined.upper(), camel):
        assert rule.matches(make_url("postgresql://h/x").set(database=name)) is expected, name
        assert rule.matches(URL.create("sqlite", database=f"/srv/{name}.db")) is expected, name


@given(
    st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{0,8}", fullmatch=True),
)
def test_substring_is_not_enough_by_property(prefix: str, suffix: str) -> None:
    """A "test" inside a word (shop_latest, contest) never makes a test database."""
    assume(not f"{prefix}test".startswith("test"))  # "tes" + "test" starts a word with test
    name = f"shop_{prefix}test{suffix}"
    assert not TestDatabaseRule().matches(make_url("postgresql://h/x").set(database=name))


@given(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), st.integers(0, 3))
def test_temp_dirs_by_property(name: str, depth: int) -> None:
    """Under a given temp dir any SQLite file counts; outside it only the name decides."""
    rule = TestDatabaseRule(temp_dirs=["/srv/basetemp"])
    nested = "/".join(f"d{i}" for i in range(depth))
    inside = f"/srv/basetemp/{nested}/{name}.db".replace("//", "/")
    assert rule.matches(URL.create("sqlite", database=inside))
    outside = URL.create("sqlite", database=f"/srv/other/{nested}/{name}.db")
    assert rule.matches(outside) is any(w.startswith("test") for w in name_words(name))


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
    assert TestDatabaseRule.coerce(None).describe() == DEFAULT
    assert TestDatabaseRule.coerce("  ").describe() == DEFAULT


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
        ({}, DEFAULT),
        ({"DEPSTRACE_TEST_DB": ""}, DEFAULT),
        (
            {"DEPSTRACE_TEST_DB": " *test*, re:^sqlite"},
            "DEPSTRACE_TEST_DB patterns: *test*, re:^sqlite",
        ),
        ({"OTHER": "*prod*"}, DEFAULT),
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


# -- end to end through the pytest plugin -----------------------------------------------------

SHOP_APP = """
import os
from typing import Annotated, Iterator

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session

engine = sa.create_engine(os.environ["SHOP_URL"])  # the team's "latest" production copy


def get_db() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


app = FastAPI()


@app.get("/count")
def count(db: Annotated[Session, Depends(get_db)]) -> int:
    return db.execute(sa.text("SELECT count(*) FROM item")).scalar_one()
"""

SHOP_TESTS = """
import os

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app import app, get_db


def seeded(url, rows):
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS item (name TEXT)"))
        conn.execute(sa.text("DELETE FROM item"))
        for n in range(rows):
            conn.execute(sa.text("INSERT INTO item VALUES (:n)"), {"n": str(n)})
    return engine


def count_on(engine):
    def override():
        with Session(engine) as session:
            yield session

    app.dependency_overrides[get_db] = override
    try:
        with TestClient(app) as client:
            return client.get("/count").json()
    finally:
        app.dependency_overrides.clear()


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    return seeded(f"sqlite:///{tmp_path_factory.mktemp('data') / 'shop.db'}", 2)


def test_reads_the_production_copy():
    with TestClient(app) as client:
        assert client.get("/count").json() == 3


def test_tmp_path_file(tmp_path):
    assert count_on(seeded(f"sqlite:///{tmp_path / 'app.db'}", 1)) == 1


def test_session_temp_file(shared):
    assert count_on(shared) == 2


def test_file_of_another_run():
    assert count_on(seeded(os.environ["ELSEWHERE_URL"], 4)) == 4
"""


@pytest.fixture
def shop_latest(postgres: dict[str, str]) -> Iterator[str]:
    """A real PostgreSQL database named like a production copy (``..._shop_latest_<hex>``)
    holding three items; dropped afterwards."""
    import uuid

    import psycopg

    server = postgres["psycopg_test"].split("://", 1)[1].rsplit("/", 1)[0]
    name = f"depstrace_shop_latest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"postgresql://{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"postgresql://{server}/{name}") as conn:
            conn.execute("CREATE TABLE item (name TEXT)")
            conn.execute("INSERT INTO item VALUES ('a'), ('b'), ('c')")
        yield f"postgresql+psycopg://{server}/{name}"
    finally:
        with psycopg.connect(f"postgresql://{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _wrong_db(trace_dir: Path) -> list[tuple[str, str]]:
    """(test, redacted URL) of every WRONG_DB in the trace files of ``trace_dir``."""
    found = []
    for trace in sorted(trace_dir.glob("trace*.jsonl")):
        for record in depstrace.read_records(trace):
            if record["type"] != "request":
                continue
            urls = {d["engine_id"]: d["url"] for d in record["databases"]}
            found += [
                (record["test"], urls[f["engine_id"]])
                for f in record["findings"]
                if f["code"] == "WRONG_DB"
            ]
    return sorted(found)


@pytest.mark.postgres
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_plugin_judges_words_and_the_runs_temp_dirs(
    workers: list[str],
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    shop_latest: str,
) -> None:
    """shop_latest is production; SQLite files in the run's tmp_path and tmp_path_factory
    are test databases, also on xdist workers; a prod.db under another run's temporary
    directory (the outer pytest's) is not one of this run's (pytester passes --basetemp)."""
    elsewhere = pytester.path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("SHOP_URL", shop_latest)
    monkeypatch.setenv("ELSEWHERE_URL", f"sqlite:///{elsewhere / 'prod.db'}")
    for name in ("DEPSTRACE_FILE", "DEPSTRACE_TEST_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEPSTRACE", "1")
    pytester.makepyfile(app=SHOP_APP, test_shop=SHOP_TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers)
    result.assert_outcomes(passed=4)
    assert _wrong_db(pytester.path / ".depstrace") == [
        ("test_shop.py::test_file_of_another_run", f"sqlite:///{elsewhere / 'prod.db'}"),
        ("test_shop.py::test_reads_the_production_copy", shop_latest),
    ]


def test_plugin_default_temp_dirs_without_basetemp(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_dir: Path
) -> None:
    """Without --basetemp the run's tmp_path lives in pytest-of-<user>, and its files are
    test databases; a prod.db outside pytest's directories is not."""
    monkeypatch.setenv("SHOP_URL", f"sqlite:///{prod_dir / 'latest.db'}")
    monkeypatch.setenv("ELSEWHERE_URL", f"sqlite:///{prod_dir / 'prod.db'}")
    for name in ("DEPSTRACE_FILE", "DEPSTRACE_TEST_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEPSTRACE", "1")
    sa_prod = sqlalchemy.create_engine(f"sqlite:///{prod_dir / 'latest.db'}")
    with sa_prod.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE item (name TEXT)"))
        conn.execute(sqlalchemy.text("INSERT INTO item VALUES ('a'), ('b'), ('c')"))
    sa_prod.dispose()
    pytester.makepyfile(app=SHOP_APP, test_shop=SHOP_TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    # Not runpytest_subprocess: it would pass --basetemp.
    result = pytester.run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    engines = [
        (record["database"], record["is_test"], "/pytest-of-" in record["url"])
        for record in depstrace.read_records(pytester.path / ".depstrace" / "trace.jsonl")
        if record["type"] == "engine"
    ]
    assert sorted(engines) == [
        ("app.db", True, True),
        ("latest.db", False, False),
        ("prod.db", False, False),
        ("shop.db", True, True),
    ]
    assert _wrong_db(pytester.path / ".depstrace") == [
        ("test_shop.py::test_file_of_another_run", f"sqlite:///{prod_dir / 'prod.db'}"),
        ("test_shop.py::test_reads_the_production_copy", f"sqlite:///{prod_dir / 'latest.db'}"),
    ]
