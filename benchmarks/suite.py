"""Suite-level overhead: a generated FastAPI test suite, run with ``DEPSTRACE=1`` and without.

    .venv/bin/python benchmarks/suite.py              # 2,000 tests, 3 rounds
    .venv/bin/python benchmarks/suite.py --tests 200 --rounds 1   # a look

The suite is what a FastAPI project's tests look like: an app with a
generator-yielded SQLAlchemy session on a SQLite file under pytest's temporary
directory, a settings dependency, an overridden dependency and a module-level
``TestClient``; each test makes one request (reads, and every tenth a write).
Each round runs the suite untraced and traced, alternating which goes first;
wall time of the whole ``pytest`` process, median over rounds, ratio per
round.  Prints a table, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = """
import os

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session

engine = sa.create_engine(os.environ["SUITE_DB"], pool_size=10)
with engine.begin() as conn:
    conn.execute(sa.text("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, n INT)"))

app = FastAPI()


def get_db():
    with Session(engine) as session:
        yield session


def settings() -> dict:
    return {"page": 10}


async def flag() -> bool:
    return False


@app.get("/items/{item}")
async def read(item: int, db: Session = Depends(get_db), cfg: dict = Depends(settings),
               on: bool = Depends(flag)) -> dict:
    count = db.execute(sa.text("SELECT count(*) FROM items")).scalar_one()
    return {"item": item, "count": count, "page": cfg["page"], "flag": on}


@app.post("/items/{item}")
def write(item: int, db: Session = Depends(get_db)) -> dict:
    db.execute(sa.text("INSERT INTO items (n) VALUES (:n)"), {"n": item})
    db.commit()
    return {"item": item}
"""

CONFTEST = """
import os
import tempfile

if "SUITE_DB" not in os.environ:  # run by hand: a scratch test database
    _scratch = tempfile.mkdtemp(prefix="pytest-of-suite-")
    os.environ["SUITE_DB"] = "sqlite:///" + os.path.join(_scratch, "test.db")

import pytest
from fastapi.testclient import TestClient

from app import app, flag


async def flag_on() -> bool:
    return True


@pytest.fixture(scope="session")
def client():
    app.dependency_overrides[flag] = flag_on
    with TestClient(app) as c:
        yield c
    app.dependency_overrides.clear()
"""

TEST = """
def test_{i}(client):
    {request}
    assert response.status_code == 200
"""


def generate(root: Path, tests: int, per_file: int = 100) -> None:
    """Write the app, its conftest and ``tests`` tests into ``root``."""
    (root / "app.py").write_text(APP)
    (root / "conftest.py").write_text(CONFTEST)
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    for start in range(0, tests, per_file):
        lines = []
        for i in range(start, min(start + per_file, tests)):
            method = "post" if i % 10 == 9 else "get"
            request = f'response = client.{method}("/items/{i}")'
            lines.append(TEST.format(i=i, request=request))
        (root / f"test_gen_{start // per_file:03d}.py").write_text("".join(lines))


def run(root: Path, traced: bool) -> float:
    """Wall seconds of one pytest run of the generated suite."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPSTRACE", "PYTEST_"))}
    if traced:
        env["DEPSTRACE"] = "1"
    with tempfile.TemporaryDirectory(prefix="pytest-of-suite-") as db:  # a fresh test database
        env["SUITE_DB"] = f"sqlite:///{db}/test.db"
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"the generated suite failed ({'traced' if traced else 'untraced'}):\n"
            f"{done.stdout[-3000:]}{done.stderr[-2000:]}"
        )
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, args.tests)
        plain: list[float] = []
        traced: list[float] = []
        for number in range(args.rounds):
            order = (False, True) if number % 2 == 0 else (True, False)
            for flag in order:
                (traced if flag else plain).append(run(root, flag))
    ratios = [t / p for t, p in zip(traced, plain, strict=True)]
    print(f"## Generated suite: {args.tests:,} tests, {args.rounds} rounds (wall seconds)\n")
    print("untraced          DEPSTRACE=1       ratio")
    print("----------------  ----------------  -----------------")
    print(
        f"{statistics.median(plain):6.1f} ({min(plain):.1f}-{max(plain):.1f})"
        f"    {statistics.median(traced):6.1f} ({min(traced):.1f}-{max(traced):.1f})"
        f"    x{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
