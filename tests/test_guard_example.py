"""The bundled example suite under ``DEPSTRACE_GUARD=writes`` (README, "Guard mode")."""

from __future__ import annotations

import hashlib
from pathlib import Path

from test_example import run_example


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_example_suite_under_the_guard_leaves_production_unchanged(
    tmp_path: Path, prod_dir: Path
) -> None:
    """A first run seeds prod.db; under the guard the audit task's INSERT is refused (the
    one failing test says why) and prod.db is byte-for-byte what it was."""
    seeded = run_example(tmp_path / "seed", prod_dir)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    prod = prod_dir / "prod.db"
    before = _sha256(prod)
    result = run_example(tmp_path, prod_dir, "-q", "--tb=line", DEPSTRACE_GUARD="writes")
    assert result.returncode == 1, result.stdout + result.stderr
    assert _sha256(prod) == before
    url = f"sqlite+aiosqlite:///{prod}"
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("1 failed, 7 passed in ")
    failed = [line for line in lines if line.startswith("FAILED ")]
    assert [line.partition(" refused ")[0] for line in failed] == [
        "FAILED tests/test_orders.py::test_create_order - depstrace.guard.GuardRefused: "
        "depstrace guard (DEPSTRACE_GUARD=writes)"
    ]
    assert lines[
        lines.index(
            "depstrace guard (DEPSTRACE_GUARD=writes): refused 1 statement on non-test databases:"
        )
        + 1
    ] == (
        f"  INSERT audit_log on {url} (POST /orders in tests/test_orders.py::test_create_order) "
        "[WRONG_DB, DI_BYPASS]"
    )
    assert (
        "E   depstrace.guard.GuardRefused: depstrace guard (DEPSTRACE_GUARD=writes) refused "
        f"INSERT on table audit_log on {url} (engine e1): it is not a test database by the "
        'default rule (a word of the database name starts with "test", as in shop_test or '
        "testdb; SQLite in memory or in a test run's temporary directories)."
    ) in lines
