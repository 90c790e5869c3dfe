"""The bundled example suite (the README's main job), traced in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SHOP = Path(__file__).resolve().parent.parent / "examples" / "shop"


def run_example(
    tmp_path: Path, data: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run examples/shop's own suite with DEPSTRACE=1 and a private data dir ``data``
    (outside pytest's temporary directories, where prod.db would be a test database),
    unwrapped."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DEPSTRACE", "SHOP_"))}
    environ |= {
        "DEPSTRACE": "1",
        "DEPSTRACE_FILE": str(tmp_path / "trace.jsonl"),
        "SHOP_DATA_DIR": str(data),
        "COLUMNS": "1000",  # the data dir's length must not move the line breaks
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=SHOP,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def escaped(output: str) -> list[str]:
    """The (test, request) pairs the grouped account lists."""
    lines = output.split("= depstrace =", 1)[1].splitlines()
    found = (re.fullmatch(r"    ([A-Z]+ \S+ -> \d+) in \S+::(\S+)", line) for line in lines)
    return sorted(f"{m[2]}: {m[1]}" for m in found if m)


def test_example_suite_passes_and_names_the_three_escapes(tmp_path: Path, prod_dir: Path) -> None:
    """On SQLite the example passes, and depstrace names /stats, the audit task and /admin,
    the write the audit task committed first, and the seeding fixture by name."""
    result = run_example(tmp_path, prod_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    prod = f"sqlite+aiosqlite:///{prod_dir / 'prod.db'}"
    account = result.stdout.split("= depstrace =", 1)[1].splitlines()
    assert account[1:4] == [
        f"depstrace: 1 request wrote to a non-test database and committed (INSERT 1 on {prod}).",
        "depstrace: fixture 'databases' wrote to a non-test database outside any request and "
        f"committed (CREATE 3, INSERT 1 on {prod}).",
        "depstrace: 3 of 12 requests reached a non-test database, in 3 tests. "
        f"Trace: {tmp_path / 'trace.jsonl'}",
    ]
    assert escaped(result.stdout) == [
        "test_admin_report: GET /admin/report -> 200",
        "test_create_order: POST /orders -> 201",
        "test_stats_counts_items: GET /stats -> 200",
    ]
    assert "  via no dependency: opened outside Depends" in account
    assert "  via db=shop.db:get_db (not overridden)" in account
    assert "    2 requests in 2 tests: reads 1 (SELECT 1), writes 1 (INSERT 1), 1 commit" in account
    assert (
        "    served by app 'shop-admin' [app2] mounted in 'shop' [app1], endpoint shop.main:report"
        in account
    )
    # The account ends by naming each cause the example contains.
    why = result.stdout.split("\nwhy:\n", 1)[1].splitlines()
    assert [line.split()[0:2] for line in why[:4]] == [
        ["WRONG_DB", "x3"],
        ["OVERRIDE_NOT_VISIBLE", "x1"],
        ["DI_BYPASS", "x2"],
        ["DB_OUTSIDE_REQUEST", "x1"],
    ]
    assert "It was reached from the endpoint itself, shop/main.py:" in result.stdout
    assert "in shop.main:stats(), through module-level shop.main.SessionLocal." in result.stdout
    assert "It was reached from a background task (after the response was sent): " in result.stdout
    assert "registered on 'shop' [app1], the parent app it is mounted in" in result.stdout
    # The session-scoped seeding fixture is named, not the test that happened to need it.
    assert (
        "  DB_OUTSIDE_REQUEST  session-scoped fixture 'databases' (tests/conftest.py:86) setup: "
        "reads 7 (PRAGMA 6, SELECT 1), writes 4 (CREATE 3, INSERT 1), 1 commit" in account
    )
    assert "during the setup of session-scoped fixture 'databases'" in result.stdout
    assert "phase of tests/test_admin.py::test_admin_report" not in result.stdout


def test_example_quiet_and_verbose(tmp_path: Path, prod_dir: Path) -> None:
    """-q keeps one line per group; -v the paragraph of each request under its test."""
    quiet = run_example(tmp_path, prod_dir, "-q").stdout.split("= depstrace =", 1)[1].splitlines()
    assert [line.split(" via ")[1].split(":")[0] for line in quiet if " via " in line] == [
        "no dependency",
        "db=shop.db",
    ]
    verbose = run_example(tmp_path, prod_dir, "-v").stdout.split("= depstrace =", 1)[1].splitlines()
    assert [line for line in verbose if line.startswith("tests/")] == [
        "tests/test_admin.py::test_admin_report",
        "tests/test_orders.py::test_create_order",
        "tests/test_stats.py::test_stats_counts_items",
    ]
    assert "    writes     1 (INSERT 1), 1 commit" in verbose


@pytest.mark.postgres
def test_example_suite_on_postgres(
    tmp_path: Path, prod_dir: Path, postgres: dict[str, str]
) -> None:
    """With SHOP_BACKEND=postgres the same three requests reach depstrace_shop_prod."""
    result = run_example(tmp_path, prod_dir, SHOP_BACKEND="postgres")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 of 12 requests reached a non-test database, in 3 tests." in result.stdout
    assert result.stdout.count("/depstrace_shop_prod") >= 3
