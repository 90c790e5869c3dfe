"""The bundled example suite (the README's main job), traced in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHOP = Path(__file__).resolve().parent.parent / "examples" / "shop"


def run_example(tmp_path: Path, data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run examples/shop's own suite with DEPSTRACE=1 and a private data dir ``data``
    (outside pytest's temporary directories, where prod.db would be a test database)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DEPSTRACE", "SHOP_"))}
    environ |= {
        "DEPSTRACE": "1",
        "DEPSTRACE_FILE": str(tmp_path / "trace.jsonl"),
        "SHOP_DATA_DIR": str(data),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=SHOP,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def escaped(output: str) -> list[str]:
    """The (test, request) pairs the depstrace summary lists."""
    lines = output.split("= depstrace =", 1)[1].splitlines()
    pairs, test = [], None
    for line in lines:
        if line in ("other findings:", "why:"):
            break
        if line.startswith("tests/"):
            test = line.split("::")[1]
        elif line.startswith("  ") and not line.startswith("    ") and test:
            pairs.append(f"{test}: {line.strip().split('  ')[0]}")
    return pairs


def test_example_suite_passes_and_names_the_three_escapes(tmp_path: Path, prod_dir: Path) -> None:
    """On SQLite the example passes, and depstrace names /stats, the audit task and /admin."""
    result = run_example(tmp_path, prod_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 of 12 requests reached a non-test database, in 3 tests." in result.stdout
    assert escaped(result.stdout) == [
        "test_admin_report: GET /admin/report -> 200",
        "test_create_order: POST /orders -> 201",
        "test_stats_counts_items: GET /stats -> 200",
    ]
    assert "served by  app 'shop-admin' [app2] mounted in 'shop' [app1]" in result.stdout
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
    assert "during the setup phase of tests/test_admin.py::test_admin_report" in result.stdout


@pytest.mark.postgres
def test_example_suite_on_postgres(
    tmp_path: Path, prod_dir: Path, postgres: dict[str, str]
) -> None:
    """With SHOP_BACKEND=postgres the same three requests reach depstrace_shop_prod."""
    result = run_example(tmp_path, prod_dir, SHOP_BACKEND="postgres")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 of 12 requests reached a non-test database, in 3 tests." in result.stdout
    assert result.stdout.count("/depstrace_shop_prod") >= 3
