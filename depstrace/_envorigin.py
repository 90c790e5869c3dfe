"""Where an environment variable that holds an engine's URL got its value.

``ENGINE_FROM_ENV`` names the variables whose value is a non-test engine's URL;
the fix depends on *when* the variable got that value.  depstrace keeps a
snapshot of the environment taken when it started (the pytest plugin takes it
when pytest loads it, before any conftest or ``pytest_load_initial_conftests``
hook such as pytest-env's runs; the launcher at interpreter start).  The
snapshot holds hashes, never values: a URL may carry a password.

When an engine's URL matches a variable, :func:`origin` compares its value
with the snapshot and looks for the lines that set it in the files that
usually do: the conftest modules Python imported, pytest's ini file (the
``env`` setting of pytest-env) and a ``.env`` file in the working directory.
Lines are reported as ``file:line`` and the kind of statement, never their
text, and only when they can have produced the value: a line whose string
literal (or f-string's fixed parts) differs from the value is left out (a
``setdefault`` stays, it *kept* a value), one whose value cannot be read is
said to "may" set it.  All of this runs once per matching engine, never per
statement.

A value a test changed is told by that test: the pytest plugin calls
:func:`test_started` as each test starts, which compares hashes of the
environment with those taken when the previous test started (one pass over
``os.environ`` per test) and remembers, per variable, the test during which it
took its latest value.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from os.path import basename
from pathlib import Path
from typing import Any

from depstrace._callables import absolute_path, shorten_path

_environ = os.environ  # bound at import: a test may patch os.environ's attributes
_started: dict[str, int] | None = None
_config_files: tuple[Path, ...] = ()
_running: str | None = None  # the test that started last
_seen: dict[str, int] = {}  # hashes when that test started
_changed_in: dict[str, tuple[int, str]] = {}  # name -> (hash, the test it took it in)

# How a line sets a variable, for the kinds worth naming; the first match wins.
_KINDS = (
    ("setdefault", "calls os.environ.setdefault, which keeps a value that is already set"),
    ("setenv", "calls monkeypatch.setenv"),
    ("putenv", "calls os.putenv"),
    ("update", "calls os.environ.update"),
    ("load_dotenv", "calls load_dotenv"),
)


def snapshot(environ: Iterable[tuple[str, str]] | None = None) -> None:
    """Remember (as hashes) the environment depstrace started with; the first call wins."""
    global _started
    if _started is None:
        items = os.environ.items() if environ is None else environ
        _started = {name: hash(value) for name, value in items}


def forget() -> None:
    """Drop the snapshot and the config files (tests, or a new run in this process)."""
    global _started, _config_files, _running, _seen
    _started, _config_files, _running, _seen = None, (), None, {}
    _changed_in.clear()


def test_started(nodeid: str) -> None:
    """A test starts: note the variables the previous test left with a new value."""
    global _running, _seen
    if _started is None:
        return
    now = {name: hash(value) for name, value in _environ.items()}
    if _running is not None:
        for name, hashed in now.items():
            if _seen.get(name) != hashed:
                _changed_in[name] = (hashed, _running)
    _running, _seen = nodeid, now


def note_config_files(paths: Iterable[Path]) -> None:
    """Files that may set variables for the run (pytest's ini file)."""
    global _config_files
    _config_files = tuple(paths)


def origin(name: str) -> dict[str, Any]:
    """When ``name`` got its current value and the lines that may have set it.

    ``set`` is ``before_start`` (unchanged since depstrace started: exported by
    the shell, the CI job or a process manager), ``changed`` (it was set then,
    and holds another value now) or ``during_run`` (it did not exist then);
    ``None`` when no snapshot was taken.  ``during_test`` is the test during
    which it took this value (``None``: before any test, or unknown).  ``lines``
    are ``{"at": "file:line", "how": "calls os.environ.setdefault, ..."}``.
    """
    value = _environ.get(name)
    state: str | None = None
    during: str | None = None
    if _started is not None:
        if name not in _started:
            state = "during_run"
        elif value is not None and hash(value) == _started[name]:
            state = "before_start"
        else:
            state = "changed"
        if state != "before_start" and value is not None:
            hashed = hash(value)
            if _running is not None and _seen.get(name) != hashed:
                during = _running
            elif name in _changed_in and _changed_in[name][0] == hashed:
                during = _changed_in[name][1]
    return {"set": state, "during_test": during, "lines": _lines_setting(name, value, during)}


def _candidate_files() -> list[Path]:
    files: dict[str, Path] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        # Nothing through os.path's attributes: this may run inside a test that
        # patched them (an engine built there from an exported URL).
        if isinstance(path, str) and basename(path) == "conftest.py":
            files.setdefault(absolute_path(path), Path(path))
    for path in (*_config_files, Path(".env")):
        files.setdefault(absolute_path(path), path)
    return sorted(files.values(), key=lambda p: (p.name != "conftest.py", str(p)))


def _lines_setting(
    name: str, value: str | None = None, during: str | None = None
) -> list[dict[str, str]]:
    word = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])")
    # NAME=... in .env, pytest-env's `env` lines (optional D:/R: flags, quoted in a
    # pyproject list) and its [tool.pytest_env] table.
    assignment = re.compile(rf"""(?:^|[\s"'\[,])(?:export\s+|[DR]:)*{re.escape(name)}\s*=""")
    found: list[dict[str, str]] = []
    for path in _candidate_files():
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        python = path.suffix == ".py"
        for number, line in enumerate(text.splitlines(), start=1):
            if not word.search(line) or line.lstrip().startswith("#"):
                continue
            how = _how(line, name) if python else _setting(path, line, assignment)
            if how is None:
                continue
            if during is not None and not (python and line[:1].isspace()):
                continue  # ran at import or start, before the test that set the value
            produced = None if value is None else _produces(line, name, value, python)
            if produced is False and not how.startswith("calls os.environ.setdefault"):
                continue  # its literal is another value (a setdefault kept one: it stays)
            if produced is None and value is not None:
                verb, _, rest = how.partition(" ")
                how = f"may {verb.removesuffix('s')} {rest}"
            found.append({"at": f"{shorten_path(str(path))}:{number}", "how": how})
    return found


def _produces(line: str, name: str, value: str, python: bool) -> bool | None:
    """Whether the value a line sets can be ``value`` (None: it cannot be read)."""
    quoted = re.escape(name)
    if python:
        rhs = re.search(
            rf"""["']{quoted}["']\s*(?:\]\s*=(?!=)|,|:)\s*(.+)|\b{quoted}\s*=\s*(.+)""", line
        )
        literal = rhs and re.match(
            r"""([rRuUbBfF]*)("|')(.*?)\2\s*([^\s#]?)""", (rhs.group(1) or rhs.group(2)).strip()
        )
        if not literal or "\\" in literal.group(3) or literal.group(4) not in ("", ")", ",", "}"):
            return None  # a name, an expression or escapes: its value is unknown here
        text = literal.group(3)
        holes = r"\{[^}]*\}" if "f" in literal.group(1).lower() else None
    else:
        rhs = re.search(rf"{quoted}\s*=\s*(.*)", line)
        if rhs is None:
            return None
        rest = rhs.group(1).strip()
        end = rest.find(rest[0], 1) if rest[:1] in ("'", '"') else -1
        text = rest[1:end] if end > 0 else re.split(r"""["']""", rest)[0].strip()
        holes = r"\$\{[^}]*\}|\{[^}]*\}|\$\w+"  # pytest-env's {VAR}, a .env's ${VAR}
    pieces = re.split(holes, text) if holes else [text]
    return re.fullmatch(".*".join(re.escape(piece) for piece in pieces), value) is not None


def _how(line: str, name: str) -> str | None:
    """The kind of a Python line that sets ``name``, or None when it only reads it."""
    for token, how in _KINDS:
        if f"{token}(" in line:
            return how
    if re.search(rf"""\[\s*["']{re.escape(name)}["']\s*\]\s*=(?!=)""", line):
        return "assigns os.environ[...]"
    return None


def _setting(path: Path, line: str, assignment: re.Pattern[str]) -> str | None:
    if not assignment.search(line):
        return None
    if path.name == ".env":
        return "sets it in a .env file (loaded by load_dotenv or the shell)"
    return "sets it in pytest's env setting (pytest-env)"
