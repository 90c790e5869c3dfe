"""``depstrace explain [CODE]``: the page of a finding code, offline (as ``ruff rule`` does).

The pages are written once, in ``docs/findings/<CODE>.md`` of the source tree;
the wheel ships them as ``depstrace/findings_docs/`` (hatch ``force-include``),
so ``pip install depstrace`` users read the same text.  A source checkout or an
editable install has no ``findings_docs`` and reads ``docs/findings`` directly.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from depstrace.report import CAUSES

if TYPE_CHECKING:  # importlib.resources.abc from Python 3.11 on
    from importlib.abc import Traversable

_SOURCE_PAGES = Path(__file__).resolve().parent.parent / "docs" / "findings"


def pages() -> Traversable:
    """The directory of finding pages: the wheel's copy, else the source tree's."""
    shipped = resources.files("depstrace").joinpath("findings_docs")
    if shipped.is_dir():
        return shipped
    return _SOURCE_PAGES


def codes() -> list[str]:
    """Every finding code that has a page, in the order of the account's causes."""
    directory = pages()
    if not directory.is_dir():  # a broken install: say "no codes" rather than crash
        return []
    found = {
        entry.name.removesuffix(".md")
        for entry in directory.iterdir()
        if entry.name.endswith(".md") and entry.name.removesuffix(".md").isupper()
    }
    known = [code for code in CAUSES if code in found]
    return known + sorted(found.difference(known))


def page(code: str) -> str | None:
    """The Markdown page of ``code`` (any case), or None when there is none."""
    wanted = code.strip().upper()
    if wanted not in codes():
        return None
    return pages().joinpath(f"{wanted}.md").read_text(encoding="utf-8")


def listing() -> list[str]:
    """One line per code with its one-line cause, for ``depstrace explain`` alone."""
    known = codes()
    width = max((len(code) for code in known), default=0)
    lines = ["Finding codes (depstrace explain CODE prints the page of one):", ""]
    lines += [f"  {code:<{width}}  {CAUSES.get(code, '')}".rstrip() for code in known]
    return lines


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``explain`` on the CLI's subcommands."""
    parser = commands.add_parser(
        "explain",
        help="print what a finding code means, with an example and the fix "
        "(without CODE: list the codes)",
        description="Print the page of a finding code (WRONG_DB, DI_BYPASS, ...): what it "
        "means, a minimal example of the bug, what depstrace prints and the fix. Without "
        "CODE, list every code with its one-line cause.",
    )
    parser.add_argument("code", nargs="?", metavar="CODE")


def run(args: argparse.Namespace) -> int:
    """Print the page (0), the list of codes (0), or say the code is unknown (2)."""
    if args.code is None:
        print("\n".join(listing()))
        return 0
    text = page(args.code)
    if text is None:
        print(
            f"depstrace explain: unknown finding code {args.code!r}; the codes are: "
            f"{', '.join(codes())}",
            file=sys.stderr,
        )
        return 2
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
