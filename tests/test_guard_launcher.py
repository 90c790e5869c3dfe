"""``depstrace run --guard writes -- uvicorn app:app``: a dev server pointed at a copy of
production cannot write to it (real uvicorn, real HTTP, a real SQLite file)."""

from __future__ import annotations

import os
import signal
import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from test_launcher import LAUNCHERS, by_type, free_port, start_uvicorn

from depstrace.cli import main
from depstrace.launcher import prepare

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and exec are POSIX here")

APP = """\
import sqlalchemy as sa
from fastapi import FastAPI

prod_engine = sa.create_engine("sqlite:///prod.db")
app = FastAPI(title="guarded")


@app.post("/orders")
def order() -> int:
    with prod_engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO orders VALUES (1)"))
    return 1


@app.get("/orders")
def count() -> int:
    with prod_engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
"""


def test_a_guarded_dev_server_refuses_writes_to_production(prod_dir: Path) -> None:
    """POST is a 500 and writes nothing, GET works; the account on stderr and the trace
    file list the refusal."""
    (prod_dir / "app.py").write_text(APP)
    with closing(sqlite3.connect(prod_dir / "prod.db")) as conn, conn:
        conn.execute("CREATE TABLE orders (x INTEGER)")
    launcher = [*LAUNCHERS["console-script"][:-1], "--guard", "writes", "--"]
    port = free_port()
    proc = start_uvicorn(launcher, prod_dir, port)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}/orders", timeout=10).status_code == 500
        assert httpx.get(f"{base}/orders", timeout=10).json() == 0
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    with closing(sqlite3.connect(prod_dir / "prod.db")) as conn, conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
    (refused,) = by_type(prod_dir / "trace.jsonl")["guard"]
    assert (refused["action"], refused["operation"], refused["table"], refused["request"]) == (
        "refused",
        "INSERT",
        "orders",
        {"id": "r1", "method": "POST", "path": "/orders"},
    )
    lines = stderr.splitlines()
    start = lines.index(
        "depstrace guard (DEPSTRACE_GUARD=writes): refused 1 statement on non-test databases:"
    )
    assert lines[start + 1] == (
        "  INSERT orders on sqlite:///prod.db (POST /orders) [WRONG_DB, DI_BYPASS]"
    )
    # The server's log shows the refusal as the 500's exception, with the server's words.
    assert any('allow_db("prod.db")' in line and "pytest" not in line for line in lines)


def test_guard_option_sets_the_variable_and_bad_values_stop_the_launcher(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--guard all`` reaches the child as DEPSTRACE_GUARD=all; an exported bad value
    exits 2 before the command starts, naming the variable."""
    launch = prepare(["python", "-c", "pass"], {"PATH": os.environ["PATH"]}, pid=1, guard="all")
    assert launch.env["DEPSTRACE_GUARD"] == "all"
    monkeypatch.setenv("DEPSTRACE_GUARD", "on")
    assert main(["run", "--", "depstrace-no-such-command"]) == 2  # never exec from pytest
    _, err = capsys.readouterr()
    assert err.startswith("depstrace run: DEPSTRACE_GUARD='on' is not a valid value.")
