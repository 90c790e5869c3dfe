"""Hide passwords and other secrets in database URLs, DSNs and free text.

Everything depstrace prints, stores or exports about a database goes through this
module first. The rules lean towards over-redaction: when a URL is ambiguous (a raw,
unescaped password may contain ``@``, ``/``, ``?``, ``#`` or spaces) we mask more than
strictly necessary rather than risk showing part of a secret.
"""

from __future__ import annotations

import re
import string
import sys
from typing import Any
from urllib.parse import unquote, unquote_plus

__all__ = ["database_name", "redact_dsn", "redact_text", "redact_url", "sqlite_file"]

MASK = "***"

# Substrings that make a key secret-looking. "pass" also covers password, passwd and
# sslpassword, "key" covers apikey/api_key/api-key, and "sig" covers signature.
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "sig", "private")
_SECRET_RE = re.compile("|".join(_SECRET_WORDS), re.IGNORECASE)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SCHEME_CHARS = frozenset(string.ascii_letters + string.digits + "+.-")
# A query parameter starts after &, ; or # only when a ``name=`` follows, so a raw "&"
# inside a secret value stays part of (and is masked with) that value.
_PARAM_SPLIT_RE = re.compile(r"([&;#])(?=[^&;#=]*=)")
# A URL in free text stops at whitespace, quotes and brackets; _text_url_end may extend it.
_TEXT_URL_TAIL_RE = re.compile(r"[^\s'\"<>(){}]*")
_SPACE_RE = re.compile(r"\s")
_NOT_KEYS = ("error", "exception", "warning")  # "KeyError: 'password'" names no secret
_PORT_RE = re.compile(r"[^:/@]*:\d+[/,?#]")
_QUOTED = r"'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|\{(?:[^}]|\}\})*\}?"
# The lookahead keeps the regex linear: only keys that contain a secret word are tried,
# so a non-secret key never swallows a value that itself holds "password=...". A key right
# after "//" is a URL's username ("postgresql://authuser:pw@h"), left to the URL rules.
_KEY = rf"(?<![\w.\-])(?<!//)(?=[\w.\-]*(?:{'|'.join(_SECRET_WORDS)}))(?P<key>[\w.\-]+)"
_TEXT_PAIR_RE = re.compile(
    _KEY + r"(?P<sep>[\"']?[ \t]*(?:=|:(?!//))[ \t]*)(?P<scheme>(?:bearer|basic|digest)[ \t]+)?"
    r"(?P<val>'(?:[^'\\\n]|\\.)*'?|\"(?:[^\"\\\n]|\\.)*\"?|\{(?:[^}\n]|\}\})*\}?"
    r"|[^\s\"',;&]*)",
    re.IGNORECASE,
)
_LIBPQ_PAIR_RE = re.compile(_KEY + rf"(?P<sep>\s*=\s*)(?P<val>{_QUOTED}|\S*)", re.I | re.S)
_ODBC_PAIR_RE = re.compile(_KEY + rf"(?P<sep>\s*=\s*)(?P<val>{_QUOTED}|[^;]*)", re.I | re.S)
# Only terminated quotes count here: a stray quote in a raw ODBC password must not hide
# the ";" separators and switch to libpq rules (where a value ends at a space).
_QUOTED_SPAN_RE = re.compile(r"'(?:[^'\\]|\\.)*'|\{(?:[^}]|\}\})*\}", re.S)


def _sqlalchemy_class(module: str, name: str) -> type[Any] | None:
    """Return a SQLAlchemy class only if SQLAlchemy is already imported, never importing it."""
    # An object can only be an instance of a SQLAlchemy class if SQLAlchemy is loaded, so
    # looking in sys.modules keeps this module usable (and cheap) without SQLAlchemy.
    cls = getattr(sys.modules.get(module), name, None)
    return cls if isinstance(cls, type) else None


def _is_secret(key: str) -> bool:
    return _SECRET_RE.search(unquote_plus(key)) is not None


def _to_text(url: object) -> tuple[str, Any]:
    """Render ``url`` as text, returning it with the SQLAlchemy URL object (or None)."""
    if isinstance(url, str):
        return url, None
    # Redaction runs inside error paths, so a broken object must never make it raise.
    sa_url: Any = None
    try:
        url_cls = _sqlalchemy_class("sqlalchemy.engine.url", "URL")
        if url_cls is not None and isinstance(url, url_cls):
            sa_url = url
            return str(sa_url.render_as_string(hide_password=False)), sa_url
    except Exception:
        pass
    try:
        return str(url), sa_url
    except Exception:
        return f"<unprintable {type(url).__name__}>", sa_url


def _split_authority(rest: str) -> tuple[str | None, str]:
    """Split what follows ``scheme://`` into (userinfo holding a password, remainder)."""
    # Raw passwords may contain "@", so the userinfo ends at the LAST "@": anything else
    # could leave the tail of a password visible. An "@" in the query over-redacts.
    at = rest.rfind("@")
    if at < 0 or ":" not in rest[:at]:
        return None, rest
    return rest[:at], rest[at + 1 :]


def _mask_param(part: str) -> str:
    key, eq, _ = part.partition("=")
    return f"{key}={MASK}" if eq and _is_secret(key) else part


def _mask_params(query: str) -> str:
    parts = _PARAM_SPLIT_RE.split(query)
    parts[0::2] = [_mask_param(part) for part in parts[0::2]]
    return "".join(parts)


def _query_start(text: str) -> int:
    starts = [i for i in (text.find("?"), text.find("#")) if i >= 0]
    return min(starts, default=-1)


def _redact_tail(tail: str, userinfo: str) -> str:
    """Redact host, path and query; ``userinfo`` is what preceded the splitting "@"."""
    start = _query_start(tail)
    head, query = (tail, "") if start < 0 else (tail[: start + 1], tail[start + 1 :])
    begun = _query_start(userinfo)
    if begun >= 0:
        # The query may have begun before the last "@" (a raw "@" in a value): the head then
        # continues the userinfo's last parameter and may hold parameters of its own.
        key, eq, _ = _PARAM_SPLIT_RE.split(userinfo[begun + 1 :])[-1].partition("=")
        head = _mask_params(head)
        if eq and _is_secret(key):
            head = MASK + "".join(_PARAM_SPLIT_RE.split(head, maxsplit=1)[1:])
    return head + _mask_params(query)


def _redact_url_string(text: str) -> str:
    match = _SCHEME_RE.match(text)
    if match is None:
        return redact_text(text)
    userinfo, tail = _split_authority(text[match.end() :])
    if userinfo is None:
        return match.group(0) + _redact_tail(tail, "")
    # The username ends at the first ":" (Azure-style "user@server" names keep their "@");
    # a "username" holding "/", "?" or "#" means we mis-split, so hide all of it.
    user = userinfo.split(":", 1)[0]
    prefix = MASK if any(c in user for c in "/?#") else f"{user}:{MASK}"
    return f"{match.group(0)}{prefix}@{_redact_tail(tail, userinfo)}"


def redact_url(url: object) -> str:
    """Return ``url`` (a str, a SQLAlchemy ``URL`` or anything printable) as a string with the
    password and the values of secret-looking query parameters replaced by ``***``, keeping
    scheme, username, hosts, ports, database and other parameters readable; strings that are
    not URLs are redacted like free text."""
    text, _ = _to_text(url)
    return _redact_url_string(text)


def redact_dsn(dsn: str) -> str:
    """Return a libpq ``key=value`` DSN (quoted values allowed) or a ``;``-separated ODBC
    connection string with the values of secret-looking keys replaced by ``***``; a DSN that
    is actually a ``scheme://`` URL is handed to :func:`redact_url`."""
    if _SCHEME_RE.match(dsn.lstrip()):
        return redact_url(dsn)
    # ODBC values run to the next ";", libpq ones to whitespace; a ";" hidden in a quoted or
    # braced value must not switch a libpq DSN to ODBC rules.
    odbc = ";" in _QUOTED_SPAN_RE.sub("", dsn)
    return (_ODBC_PAIR_RE if odbc else _LIBPQ_PAIR_RE).sub(_mask_pair, dsn)


def _mask_pair(match: re.Match[str]) -> str:
    groups = match.groupdict()
    value = groups["val"]
    sep = groups["sep"]
    if not value or (sep.strip().endswith(":") and groups["key"].lower().endswith(_NOT_KEYS)):
        # "KeyError: 'x'" names an exception, not a credential; empty values hide nothing.
        return match.group(0)
    if value.startswith(("'", '"')):
        masked = value[0] + MASK + value[0]
    else:
        masked = "{" + MASK + "}" if value.startswith("{") else MASK
    return f"{groups['key']}{sep}{groups.get('scheme') or ''}{masked}"


def _find_text_url(text: str, pos: int) -> tuple[int, int] | None:
    """(start, end) of the next ``scheme://...`` in ``text`` at or after ``pos``, or None."""
    # Searching for "://" and walking back over the scheme stays linear on long words,
    # where a regex starting at every letter would be quadratic.
    while (sep := text.find("://", pos)) >= 0:
        start = sep
        while start > pos and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        scheme = text[start:sep].lstrip("0123456789+.-")
        if scheme:
            tail = _TEXT_URL_TAIL_RE.match(text, sep + 3)
            return sep - len(scheme), tail.end() if tail else sep + 3
        pos = sep + 3
    return None


def _text_url_end(text: str, start: int, end: int) -> int:
    """Where the URL at ``text[start:end]`` ends, extended when a raw password may go on."""
    body = text[start:end].split("://", 1)[1]
    # Only a ":" before the path can start a password; "host:5432/" is a port.
    if ":" not in body.split("/", 1)[0] or _PORT_RE.match(body):
        return end
    # A password with a space or quote cuts the match short; if an "@" follows on the same
    # line, assume the password runs up to the last one (over-redacting rather than leaking).
    line_end = text.find("\n", end)
    last_at = text.rfind("@", end, len(text) if line_end < 0 else line_end)
    if last_at < 0:
        return end
    tail = _TEXT_URL_TAIL_RE.match(text, last_at + 1)
    return tail.end() if tail else last_at + 1


def redact_text(text: str) -> str:
    """Return arbitrary text (an exception message, a log line) with every ``scheme://`` URL
    redacted by :func:`redact_url` and the values of secret-looking ``key=value``,
    ``key: value`` and ``"key": "value"`` pairs replaced by ``***``."""
    if _SECRET_RE.search(text) is not None:
        # Pairs first: a secret value may itself contain "://" and must not become a URL.
        text = _TEXT_PAIR_RE.sub(_mask_pair, text)
    if "://" not in text:
        return text
    pieces: list[str] = []
    pos = 0
    while (found := _find_text_url(text, pos)) is not None:
        start, end = found
        end = _text_url_end(text, start, end)
        redacted = _redact_url_string(text[start:end])
        if redacted.endswith(MASK) and end < len(text) and not text[end].isspace():
            # A secret value cut short by a quote or bracket may go on: mask to whitespace.
            space = _SPACE_RE.search(text, end)
            end = space.start() if space else len(text)
            redacted = _redact_url_string(text[start:end])
        pieces += [text[pos:start], redacted]
        pos = end
    return "".join([*pieces, text[pos:]])


def _sqlite_path(database: str | None, in_memory: bool) -> str:
    if in_memory or not database or database == ":memory:" or database.startswith("file::memory:"):
        return ":memory:"
    if database.startswith("file:"):
        database = database[len("file:") :]  # SQLite URI filename
    return database


def _backend_and_database(url: object) -> tuple[str | None, str | None]:
    """(backend, database as written) of a str or SQLAlchemy ``URL``; for SQLite the
    database is its file path, or ``":memory:"``; (None, None) when ``url`` is no URL."""
    text, sa_url = _to_text(url)
    if sa_url is not None:
        try:
            backend, database = sa_url.get_backend_name(), sa_url.database
            if backend == "sqlite":
                in_memory = "memory" in str(sa_url.query.get("mode", ""))
                return backend, _sqlite_path(database, in_memory)
            return backend, str(database) if database else None
        except Exception:
            return None, None
    match = _SCHEME_RE.match(text.strip())
    if match is None:
        return None, None
    rest = text.strip()[match.end() :]
    backend = match.group(0).split("+", 1)[0].split(":", 1)[0].lower()
    if backend == "sqlite":
        path, _, query = rest.partition("?")
        path = path[1:] if path.startswith("/") else path
        return backend, _sqlite_path(path, "mode=memory" in query)
    path = re.split(r"[?#]", _split_authority(rest)[1], maxsplit=1)[0]
    return backend, unquote(path.partition("/")[2]) or None


def database_name(url: object) -> str | None:
    """Return the database name as users think of it: the file name for SQLite (``test.db``),
    ``":memory:"`` for in-memory SQLite, the path component (``db``) for other backends, or
    None when ``url`` (a str or SQLAlchemy ``URL``) names no database."""
    backend, database = _backend_and_database(url)
    if backend != "sqlite" or database is None or database == ":memory:":
        return database
    return database.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or database


def sqlite_file(url: object) -> str | None:
    """Return the path of an on-disk SQLite database as the URL writes it (a relative path
    stays relative to the working directory), or None for in-memory SQLite, other backends
    and strings that are not URLs."""
    backend, database = _backend_and_database(url)
    return database if backend == "sqlite" and database != ":memory:" else None
