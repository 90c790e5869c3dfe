"""The rule that decides whether a database is a test database.

A rule comes from the ``DEPSTRACE_TEST_DB`` environment variable or from a spec passed in
code (patterns, a regex, a callable, a SQLAlchemy URL or engine). Every check runs on the
redacted URL, so user patterns and callables never see a password.

The default rule judges *words* of the database name, not substrings: ``shop_test`` and
``testdb`` are test databases, ``shop_latest`` (a production copy) and ``contest`` are not.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from os import lstat as _lstat
from os import readlink as _readlink

# Bound at import: a test may patch os.path's functions, and a rule judged while it
# runs must neither call its mock nor change its call count (DESIGN.md, invisible).
from os.path import normcase as _normcase
from os.path import normpath as _normpath
from os.path import realpath as _realpath
from stat import S_ISLNK as _is_link
from typing import Any

from depstrace._callables import absolute_path
from depstrace._redact import _sqlalchemy_class, database_name, redact_url, sqlite_file

__all__ = ["ENV_VAR", "TestDatabaseRule", "name_words"]

ENV_VAR = "DEPSTRACE_TEST_DB"

_DEFAULT_DESCRIPTION = (
    'default rule (a word of the database name starts with "test", as in shop_test or '
    "testdb; SQLite in memory or in a test run's temporary directories)"
)
_HOW_TO = "write re:<python regex> or an fnmatch glob such as *test*"
_ACCEPTED = (
    "None, a str of comma-separated patterns (re:<regex> or fnmatch globs), a compiled "
    "re.Pattern, a callable (redacted_url: str) -> bool, a SQLAlchemy URL, Engine or "
    "AsyncEngine, or a TestDatabaseRule"
)

# (original url, redacted url) -> is it a test database?
_Predicate = Callable[[object, str], bool]
_Key = tuple[str, str | None, int | None, str | None]


def _name(url: object, redacted: str) -> str | None:
    # Strings are read back from their redacted form so nothing secret reaches patterns.
    return database_name(redacted if isinstance(url, str) else url)


# Where words of a name meet: a run of anything but letters and digits, a lower-case letter
# or digit followed by a capital (shopTest), a capital ending an acronym (APITest).
_WORD_BOUNDARY = re.compile(r"[\W_]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def name_words(name: str) -> list[str]:
    """Split a database name into the words the default rule judges: on every character
    that is not a letter or digit and where the case changes
    (``"myapp_test_gw0"`` -> ``["myapp", "test", "gw0"]``, ``"ShopTestDB"`` ->
    ``["Shop", "Test", "DB"]``)."""
    return [word for word in _WORD_BOUNDARY.split(name) if word]


def _test_name(name: str) -> bool:
    return any(word[:4].lower() == "test" for word in name_words(name))


def _spellings(path: str) -> set[str]:
    """``path`` made absolute, as written and with symlinks resolved (``/tmp`` is
    ``/private/tmp`` on macOS), in the platform's case.  Only for the temporary
    roots, which are resolved once when the rule is built."""
    absolute = absolute_path(path)
    return {_case(absolute), _case(_realpath(absolute))}


def _case(path: str) -> str:
    # posixpath.normcase only calls os.fspath (patchable): nothing to do on POSIX.
    return _normcase(path) if os.name == "nt" else path


def _resolve(path: str, depth: int = 0) -> str:
    """``os.path.realpath`` of an absolute POSIX ``path`` through functions bound at
    import (posixpath.realpath calls its module's abspath and islink, which a test may
    patch); a missing component or a loop leaves the rest as written."""
    if os.name == "nt" or depth > 40:
        return _realpath(path) if os.name == "nt" else path
    resolved = ""
    parts = [part for part in path.split(os.sep) if part]
    for index, part in enumerate(parts):
        candidate = f"{resolved}{os.sep}{part}"
        try:
            is_link = _is_link(_lstat(candidate).st_mode)
        except OSError:
            return _normpath(os.sep.join([candidate, *parts[index + 1 :]]))
        if not is_link:
            resolved = candidate
            continue
        target = _readlink(candidate)
        if not target.startswith(os.sep):
            target = f"{resolved}{os.sep}{target}"
        resolved = _resolve(_normpath(target), depth + 1).rstrip(os.sep)
    return resolved or os.sep


def _parts_below(path: str, root: str) -> list[str] | None:
    """The components of ``path`` below ``root``, or None when it is not inside it."""
    prefix = root if root.endswith(os.sep) else root + os.sep
    return path[len(prefix) :].split(os.sep) if path.startswith(prefix) else None


def _temp_root() -> str:
    # Where pytest puts its pytest-of-<user> directories (the same lookup as pytest's).
    return os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()


def _default_rule(temp_dirs: Iterable[str | os.PathLike[str]] | None) -> _Predicate:
    """The default predicate. ``temp_dirs`` are pytest's temporary directories for this
    run (its ``--basetemp``); None means pytest's default place, any
    ``pytest-of-<user>`` directory in the system's temporary directory."""
    if temp_dirs is None:
        roots = _spellings(_temp_root())
        depth = 2  # pytest-of-<user>/<something>/...: inside one of pytest's directories
    else:
        roots = {spelling for path in temp_dirs for spelling in _spellings(os.fspath(path))}
        depth = 1

    def in_temp_dirs(path: str) -> bool:
        absolute = _case(absolute_path(path))
        if below(absolute):
            return True
        # A symlink into a temporary directory: resolved only when the plain path is not
        # inside one (realpath calls os.path's functions, which a test may patch).
        resolved = _case(_resolve(absolute))
        return resolved != absolute and below(resolved)

    def below(spelling: str) -> bool:
        for root in roots:
            parts = _parts_below(spelling, root)
            if parts is None or len(parts) < depth:
                continue
            if temp_dirs is not None or parts[0].startswith("pytest-of-"):
                return True
        return False

    def predicate(url: object, redacted: str) -> bool:
        name = _name(url, redacted)
        if name is None:
            return False
        if name == ":memory:" or _test_name(name):
            return True
        path = sqlite_file(redacted if isinstance(url, str) else url)
        return path is not None and in_temp_dirs(path)

    return predicate


def _compile(item: str, source: str) -> Callable[[str], object]:
    if item.startswith("re:"):
        if not item[3:]:
            raise ValueError(f"{source} pattern {item!r} is empty; {_HOW_TO}")
        try:
            return re.compile(item[3:]).search
        except re.error as exc:
            raise ValueError(
                f"{source} pattern {item!r} is not a valid regular expression: {exc}; {_HOW_TO}"
            ) from None
    if not item:
        raise ValueError(f"{source} pattern {item!r} is empty; {_HOW_TO}")
    return lambda text: fnmatch.fnmatchcase(text, item)


def _pattern_predicate(tests: list[Callable[[str], object]]) -> _Predicate:
    def predicate(url: object, redacted: str) -> bool:
        name = _name(url, redacted)
        candidates = [redacted] if name is None else [redacted, name]
        return any(test(text) for test in tests for text in candidates)

    return predicate


def _url_key(url: object, redacted: str) -> _Key | None:
    """(backend, host, port, database) of a URL, or None when it cannot be parsed."""
    try:
        sa_url: Any = url
        if isinstance(url, str):
            from sqlalchemy.engine import make_url

            sa_url = make_url(redacted)
        backend, database = sa_url.get_backend_name(), sa_url.database
        if backend == "sqlite":
            # Relative and absolute spellings of one SQLite file are the same database.
            on_disk = database and database != ":memory:"
            database = absolute_path(database) if on_disk else ":memory:"
        host = sa_url.host.lower() if sa_url.host else sa_url.host
        return (backend, host, sa_url.port, database)
    except Exception:
        return None


def _target_predicate(target: _Key) -> _Predicate:
    def predicate(url: object, redacted: str) -> bool:
        key = _url_key(url, redacted)
        if key is None:
            return False
        # An omitted port means "the default", so it matches any explicit port.
        same_port = key[2] is None or target[2] is None or key[2] == target[2]
        return same_port and (key[0], key[1], key[3]) == (target[0], target[1], target[3])

    return predicate


def _callable_name(func: Callable[..., object]) -> str:
    module = getattr(func, "__module__", None) or type(func).__module__
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}:{qualname}"


class TestDatabaseRule:
    """Decides whether a database URL points at a test database. Build one from a spec
    (None for the default rule, comma-separated ``re:``/glob patterns, a compiled regex, a
    callable taking the redacted URL, a SQLAlchemy URL, Engine or AsyncEngine) and ask
    :meth:`matches`; :meth:`describe` explains the rule in messages."""

    __test__ = False  # the name starts with "Test"; keep pytest from collecting it

    def __init__(
        self,
        spec: object = None,
        *,
        source: str = ENV_VAR,
        temp_dirs: Iterable[str | os.PathLike[str]] | None = None,
    ) -> None:
        """Build the rule for ``spec``; ``source`` names where string patterns came from in
        error messages and descriptions. ``temp_dirs`` tells the default rule where this
        pytest run keeps its temporary directories (the plugin passes ``--basetemp``);
        None means pytest's default place. Raise TypeError for an unsupported spec and
        ValueError for an empty or invalid pattern."""
        self._predicate: _Predicate
        self._description: str
        self._predicate, self._description = self._build(spec, source, temp_dirs)

    @staticmethod
    def _build(
        spec: object, source: str, temp_dirs: Iterable[str | os.PathLike[str]] | None
    ) -> tuple[_Predicate, str]:
        """Turn ``spec`` into (predicate, description), checking the kinds in order."""
        if isinstance(spec, TestDatabaseRule):
            return spec._predicate, spec._description
        if spec is None or (isinstance(spec, str) and not spec.strip()):
            return _default_rule(temp_dirs), _DEFAULT_DESCRIPTION
        if isinstance(spec, str):
            items = [item.strip() for item in spec.split(",")]
            tests = [_compile(item, source) for item in items]
            return _pattern_predicate(tests), f"{source} patterns: {', '.join(items)}"
        if isinstance(spec, re.Pattern) and isinstance(spec.pattern, str):
            return _pattern_predicate([spec.search]), f"pattern re:{spec.pattern}"
        engine_cls = _sqlalchemy_class("sqlalchemy.engine", "Engine")
        async_cls = _sqlalchemy_class("sqlalchemy.ext.asyncio", "AsyncEngine")
        url: Any = spec
        kind = "URL"
        if async_cls is not None and isinstance(spec, async_cls):
            url, kind = url.sync_engine.url, "engine"
        elif engine_cls is not None and isinstance(spec, engine_cls):
            url, kind = url.url, "engine"
        url_cls = _sqlalchemy_class("sqlalchemy.engine.url", "URL")
        if url_cls is not None and isinstance(url, url_cls):
            target = _url_key(url, "")
            if target is not None:
                return _target_predicate(target), f"{kind} {redact_url(url)}"
        if callable(spec):
            func = spec
            return (lambda _url, redacted: bool(func(redacted))), f"callable {_callable_name(func)}"
        raise TypeError(f"test database spec must be {_ACCEPTED}; got {type(spec).__name__}")

    @classmethod
    def coerce(cls, spec: object, *, source: str = ENV_VAR) -> TestDatabaseRule:
        """Return ``spec`` itself when it already is a rule, else a new rule built from it."""
        return spec if isinstance(spec, TestDatabaseRule) else cls(spec, source=source)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        temp_dirs: Iterable[str | os.PathLike[str]] | None = None,
    ) -> TestDatabaseRule:
        """Build the rule from ``DEPSTRACE_TEST_DB`` in ``environ`` (the default rule, with
        ``temp_dirs``, if unset)."""
        return cls(environ.get(ENV_VAR), temp_dirs=temp_dirs)

    def matches(self, url: object) -> bool:
        """Whether ``url`` (a raw or redacted str, or a SQLAlchemy URL) is a test database;
        unparsable URLs do not match, but exceptions from a user callable propagate."""
        return self._predicate(url, redact_url(url))

    def describe(self) -> str:
        """A short human description of the rule for messages and reports."""
        return self._description

    def __repr__(self) -> str:
        """Show the rule's description, e.g. ``TestDatabaseRule('pattern re:_test$')``."""
        return f"TestDatabaseRule({self._description!r})"
