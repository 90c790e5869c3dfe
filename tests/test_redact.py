"""Tests for depstrace._redact: URLs, DSNs and free text never show a secret."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL, make_url

from depstrace._redact import database_name, redact_dsn, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+asyncpg://user:pw@host:5432/db",
            "postgresql+asyncpg://user:***@host:5432/db",
        ),
        ("sqlite:///./x.db", "sqlite:///./x.db"),
        ("sqlite+aiosqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("mysql://user@host/db", "mysql://user@host/db"),
        ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:a:b/c?d#e%f g@host:5432/db", "postgresql://u:***@host:5432/db"),
        ("postgresql://u:x@y/z@host/db", "postgresql://u:***@host/db"),
        ("postgresql://u:p@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        (
            "postgresql://user@server:pw@server.example.com/db",
            "postgresql://user@server:***@server.example.com/db",
        ),
        ("postgresql://u:@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://h/db?sslmode=require&password=x&application_name=app",
            "postgresql://h/db?sslmode=require&password=***&application_name=app",
        ),
        (
            "postgresql://h/db?Token=a&API-KEY=b&sslpassword=c&x_secret=d&sig=e",
            "postgresql://h/db?Token=***&API-KEY=***&sslpassword=***&x_secret=***&sig=***",
        ),
        ("postgresql://h/db?password=a&b&c=1", "postgresql://h/db?password=***&c=1"),
        ("postgresql://h/db?pass%77ord=x", "postgresql://h/db?pass%77ord=***"),
        ("sqlite:///x.db?token=t@k", "sqlite:///x.db?token=***"),
        ("mssql+pyodbc://h/db#token=x", "mssql+pyodbc://h/db#token=***"),
        # Over-redaction: an "@" in the query may end the userinfo, hiding host and path.
        ("postgresql://u:pw@h/db?email=a@b", "postgresql://u:***@b"),
        ("postgresql://h/db?token=x&email=a:b@c", "postgresql://***@c"),
        ("not a url", "not a url"),
        ("host=h password=x", "host=h password=***"),
    ],
)
def test_redact_url_shapes(url: str, expected: str) -> None:
    """Each URL shape is redacted to exactly the expected string."""
    assert redact_url(url) == expected


def test_redact_url_sqlalchemy_url_object() -> None:
    """A SQLAlchemy URL is rendered with its password, then redacted including its query."""
    url = URL.create(
        "postgresql+psycopg",
        username="u",
        password="p@ss/w:rd",
        host="h",
        port=5432,
        database="db",
        query={"sslmode": "require", "sslpassword": "zz"},
    )
    assert redact_url(url) == "postgresql+psycopg://u:***@h:5432/db?sslmode=require&sslpassword=***"


def test_redact_url_odd_objects() -> None:
    """Non-URL objects fall back to str(), and a failing __str__ does not raise."""

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    assert redact_url(42) == "42"
    assert redact_url(None) == "None"
    assert redact_url(Broken()) == "<unprintable Broken>"


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "host=h port=5432 dbname=d user=u password=secret",
            "host=h port=5432 dbname=d user=u password=***",
        ),
        ("host=h password='a b\\' c' dbname=d", "host=h password='***' dbname=d"),
        ("password = 'x;y' sslmode=require", "password = '***' sslmode=require"),
        ("host=h sslpassword=k sslkey=/k.pem", "host=h sslpassword=*** sslkey=***"),
        ("Server=h;Database=d;Uid=u;Pwd=secret;", "Server=h;Database=d;Uid=u;Pwd=***;"),
        ("Server=h;Pwd=my secret;Database=d", "Server=h;Pwd=***;Database=d"),
        ("Server=h;PWD={a;b}}c};Database=d", "Server=h;PWD={***};Database=d"),
        ("Pwd=a'b c;Server=h", "Pwd=***;Server=h"),
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("host=h dbname=d", "host=h dbname=d"),
    ],
)
def test_redact_dsn_shapes(dsn: str, expected: str) -> None:
    """libpq and ODBC DSNs keep everything but the secret values."""
    assert redact_dsn(dsn) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nothing to see here", "nothing to see here"),
        (
            "could not connect to postgresql://u:pw@h:5432/db: timeout",
            "could not connect to postgresql://u:***@h:5432/db: timeout",
        ),
        ("url='mysql://u:a b@h/db' failed", "url='mysql://u:***@h/db' failed"),
        ('{"user": "u", "password": "x\\"y"}', '{"user": "u", "password": "***"}'),
        ("{'token': 'abc', 'host': 'h'}", "{'token': '***', 'host': 'h'}"),
        ("login failed: PWD=zz; retry", "login failed: PWD=***; retry"),
        ("password: hunter2", "password: ***"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("KeyError: 'password'", "KeyError: 'password'"),
        ("password=ab://cd then", "password=*** then"),
        ("see https://x.com/?apikey=1&q=2 ok", "see https://x.com/?apikey=***&q=2 ok"),
        ("a postgresql://h:5432/db b@c", "a postgresql://h:5432/db b@c"),
        ("postgresql://authuser:pw@h/db failed", "postgresql://authuser:***@h/db failed"),
        ("1postgresql://u:p@h/db", "1postgresql://u:***@h/db"),
        ("(sqlite:///x.db?token=a)b) end", "(sqlite:///x.db?token=*** end"),
        # Over-redaction: a password may contain a space, so the URL runs to the last "@".
        ("postgresql://u:p@h/db mail admin@x.org", "postgresql://u:***@x.org"),
    ],
)
def test_redact_text_shapes(text: str, expected: str) -> None:
    """URLs and secret key/value pairs inside free text are redacted."""
    assert redact_text(text) == expected


def test_redact_text_long_words_stay_linear() -> None:
    """Long runs of scheme-like characters do not make URL search quadratic."""
    text = "x" * 200_000 + " postgresql://u:p@h/db " + "token" * 40_000 + "://"
    assert redact_text(text).startswith("x" * 200_000 + " postgresql://u:***@h/db ")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////tmp/pytest-of-root/test_x0/test.db", "test.db"),
        ("sqlite:////tmp/pytest-of-root/test_x0/prod.db", "prod.db"),
        ("sqlite:///./x.db", "x.db"),
        ("sqlite+aiosqlite:///C:\\data\\app.db", "app.db"),
        ("sqlite://", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite:///file::memory:?cache=shared", ":memory:"),
        ("sqlite:///file:x.db?mode=memory&cache=shared&uri=true", ":memory:"),
        ("sqlite:///file:data/x.db?mode=ro&uri=true", "x.db"),
        ("postgresql://h/db", "db"),
        ("postgresql+asyncpg://u:p@ss/x@h:5432/my%20db?sslmode=require", "my db"),
        ("postgresql://u:p@h1:5432,h2:5433/db", "db"),
        ("postgresql://h", None),
        ("not a url", None),
    ],
)
def test_database_name_strings(url: str, expected: str | None) -> None:
    """The database name is the SQLite file name or the URL's path component."""
    assert database_name(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////tmp/test_x0/prod.db", "prod.db"),
        ("sqlite://", ":memory:"),
        ("sqlite:///file::memory:?cache=shared", ":memory:"),
        ("sqlite:///file:x?mode=memory&uri=true", ":memory:"),
        ("postgresql+asyncpg://u:p@h/app_test", "app_test"),
        ("postgresql://h", None),
    ],
)
def test_database_name_sqlalchemy_url(url: str, expected: str | None) -> None:
    """A SQLAlchemy URL is read through its database and backend name."""
    assert database_name(make_url(url)) == expected


# --- property tests --------------------------------------------------------------------

_ALPHABET = st.one_of(
    st.sampled_from("@:/?#% &=+'\"\\;{}"),
    st.characters(categories=("Lu", "Ll", "Lo", "Nd")),
)
_PASSWORDS = st.text(alphabet=_ALPHABET, min_size=4, max_size=24)


def _libpq_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _odbc_brace(value: str) -> str:
    return "{" + value.replace("}", "}}") + "}"


def _encodings(pw: str) -> set[str]:
    """The password and every form in which it may be written into a URL or DSN."""
    old_sqlalchemy = re.sub("[:@/]", lambda m: f"%{ord(m.group(0)):X}", pw)
    return {
        pw,
        quote(pw, safe=""),
        quote(pw, safe=" +"),
        quote_plus(pw),
        old_sqlalchemy,
        _libpq_quote(pw),
        _odbc_brace(pw),
        json.dumps(pw),
    }


@st.composite
def _secret_urls(draw: st.DrawFn) -> tuple[str, str, str]:
    """(url holding the password, the same url with *** in its place, the password)."""
    pw = draw(_PASSWORDS)
    scheme = draw(st.sampled_from(["postgresql", "postgresql+asyncpg", "mysql+pymysql"]))
    user = draw(st.sampled_from(["user", "app_user", "user@server"]))
    port = draw(st.sampled_from(["", ":5432"]))
    database = draw(st.sampled_from(["appdb", "shop"]))
    form = draw(st.sampled_from(["raw", "quote", "quote_plus", "sqlalchemy", "multihost"]))
    in_query = draw(st.sampled_from(["", "?password=", "?sslmode=require&token="]))
    query_form = draw(st.sampled_from(["quote_plus", "raw"]))
    if in_query and query_form == "raw":
        # In a raw query value "&name=" (or ";", "#") starts a new parameter by URL syntax.
        assume(not set("&;#") & set(pw))

    def build(secret: str) -> str:
        query_value = quote_plus(secret) if query_form == "quote_plus" else secret
        query = in_query + query_value if in_query else ""
        if form == "sqlalchemy":
            rendered = URL.create(
                scheme,
                username=user,
                password=secret,
                host="db.example.com",
                port=5432 if port else None,
                database=database,
            ).render_as_string(hide_password=False)
            return rendered + query
        encoded = {"raw": secret, "quote_plus": quote_plus(secret)}.get(
            form, quote(secret, safe="")
        )
        host = "h1:5432,h2:5433" if form == "multihost" else "db.example.com" + port
        return f"{scheme}://{user}:{encoded}@{host}/{database}{query}"

    return build(pw), build("***"), pw


def _assert_hidden(output: str, skeleton: str, pw: str) -> None:
    encodings = _encodings(pw)
    # A password that already occurs in the rest of the URL cannot be told apart from it.
    assume(not any(enc in skeleton or enc in "***" for enc in encodings))
    for enc in encodings:
        assert enc not in output


@settings(max_examples=400)
@given(_secret_urls())
def test_redact_url_never_shows_the_password(case: tuple[str, str, str]) -> None:
    """No generated URL shape shows the password or any of its encodings after redaction."""
    url, skeleton, pw = case
    _assert_hidden(redact_url(url), skeleton, pw)


@settings(max_examples=300)
@given(_secret_urls(), st.sampled_from(["error: {} timeout", "'{}'", '"{}" failed', "({})"]))
def test_redact_text_never_shows_url_passwords(case: tuple[str, str, str], template: str) -> None:
    """A URL embedded in a message never shows its password after redact_text."""
    url, skeleton, pw = case
    _assert_hidden(redact_text(template.format(url)), template.format(skeleton), pw)


@st.composite
def _secret_dsns(draw: st.DrawFn) -> tuple[str, str, str]:
    """(DSN holding the password, the same DSN with *** in its place, the password)."""
    pw = draw(_PASSWORDS)
    form = draw(st.sampled_from(["libpq", "odbc_braced", "odbc_raw", "json"]))
    if form == "odbc_raw":
        assume(";" not in pw and pw.strip() == pw and pw[0] not in "{'\"")

    def build(secret: str) -> str:
        if form == "libpq":
            return f"host=h port=5432 password={_libpq_quote(secret)} dbname=d user=u"
        if form == "odbc_braced":
            return f"Server=h;Database=d;Pwd={_odbc_brace(secret)};Uid=u;"
        if form == "odbc_raw":
            return f"Server=h;Database=d;Password={secret};Uid=u"
        return json.dumps({"user": "u", "password": secret, "host": "h"})

    return build(pw), build("***"), pw


@settings(max_examples=300)
@given(_secret_dsns())
def test_redact_dsn_never_shows_the_password(case: tuple[str, str, str]) -> None:
    """libpq and ODBC DSNs never show the password after redact_dsn."""
    dsn, skeleton, pw = case
    if dsn.startswith("{"):
        return  # JSON is not a DSN; it is covered by the redact_text property below
    _assert_hidden(redact_dsn(dsn), skeleton, pw)


@settings(max_examples=300)
@given(_secret_dsns())
def test_redact_text_never_shows_dsn_passwords(case: tuple[str, str, str]) -> None:
    """DSNs and JSON embedded in a message never show the password after redact_text."""
    dsn, skeleton, pw = case
    assume(not dsn.startswith("Server=h;Database=d;Password="))  # raw ODBC needs redact_dsn
    _assert_hidden(redact_text(f"connect failed: {dsn}"), f"connect failed: {skeleton}", pw)


@settings(max_examples=300)
@given(_secret_urls(), _secret_dsns())
def test_redaction_is_idempotent(
    url_case: tuple[str, str, str], dsn_case: tuple[str, str, str]
) -> None:
    """Redacting an already redacted URL, DSN or text changes nothing."""
    url, dsn = url_case[0], dsn_case[0]
    once = redact_url(url)
    assert redact_url(once) == once
    once = redact_dsn(dsn)
    assert redact_dsn(once) == once
    once = redact_text(f"{url} {dsn}")
    assert redact_text(once) == once


_SAFE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=12)


@st.composite
def _public_urls(draw: st.DrawFn) -> str:
    """A URL with no password and only non-secret query parameters."""
    scheme = draw(st.sampled_from(["postgresql", "mysql+aiomysql", "sqlite", "sqlite+aiosqlite"]))
    if scheme.startswith("sqlite"):
        path = draw(st.sampled_from(["", "/:memory:", "/./x.db", "//abs/path/test.db"]))
        return f"{scheme}://{path}"
    user = draw(st.sampled_from(["", "user@", "app_user@"]))
    host = draw(st.sampled_from(["h", "db.example.com", "h1:5432,h2:5433", "127.0.0.1:5432"]))
    params = draw(st.lists(st.tuples(st.sampled_from(["sslmode", "charset", "app"]), _SAFE)))
    query = "&".join(f"{key}={value}" for key, value in params)
    url = f"{scheme}://{user}{host}/{draw(_SAFE)}" + (f"?{query}" if query else "")
    if draw(st.booleans()):
        url = make_url(url).render_as_string(hide_password=False) if "," not in url else url
    return url


@given(_public_urls())
def test_url_without_secret_is_unchanged(url: str) -> None:
    """A URL without password or secret parameters comes back exactly as given."""
    assert redact_url(url) == url
    assert redact_text(f"using {url} now") == f"using {url} now"
