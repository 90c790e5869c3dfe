"""``depstrace run -- COMMAND``: real processes, real uvicorn, real signals, real files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from depstrace import read_records
from depstrace.cli import main
from depstrace.launcher import BOOTSTRAP_DIR, RUN_PID_VAR, Launch, prepare, runs_pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and exec are POSIX here")

BIN = Path(sys.executable).parent

APP = """\
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI

test_engine = sa.create_engine("sqlite:///test_app.db")
prod_engine = sa.create_engine("sqlite:///prod.db")
app = FastAPI(title="launched")


def get_conn():
    with test_engine.connect() as conn:
        yield conn


@app.get("/items/{n}")
def item(n: int, conn: Annotated[sa.Connection, Depends(get_conn)]) -> int:
    return conn.execute(sa.text("SELECT :n"), {"n": n}).scalar_one()


@app.get("/report")
def report() -> int:
    with prod_engine.connect() as conn:  # not through Depends: an override cannot reach it
        return conn.execute(sa.text("SELECT 1")).scalar_one()
"""

# A request served in-process, for scripts that are not servers.
CLIENT = """\
import warnings

warnings.simplefilter("ignore")  # Starlette's TestClient nudges towards httpx2
from fastapi.testclient import TestClient

from app import app


def get(path):
    with TestClient(app) as client:
        return client.get(path).json()
"""


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a launched program: this venv first on PATH, a trace file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPSTRACE")}
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DEPSTRACE_FILE"] = str(tmp_path / "trace.jsonl")
    env.update(extra)
    return env


def account(stderr: str) -> list[str]:
    """The end-of-run account at the end of ``stderr``."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("depstrace: ")]
    assert starts, f"no depstrace account in stderr:\n{stderr}"
    return lines[starts[-1] :]


def by_type(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The records of a trace file grouped by type."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in read_records(path):
        grouped.setdefault(str(record["type"]), []).append(record)
    return grouped


LAUNCHERS = {
    "console-script": [str(BIN / "depstrace"), "run", "--"],
    "python-m": [sys.executable, "-m", "depstrace", "run", "--"],
}


@pytest.fixture
def app_dir(prod_dir: Path) -> Path:
    """A directory holding the app module (and the SQLite files it creates); outside
    pytest's temporary directories, where prod.db would count as a test database."""
    (prod_dir / "app.py").write_text(APP)
    (prod_dir / "client.py").write_text(CLIENT)
    return prod_dir


def start_uvicorn(
    launcher: list[str], app_dir: Path, port: int, *options: str
) -> subprocess.Popen[str]:
    """``<launcher> python -m uvicorn app:app`` on ``port``, once it accepts connections."""
    command = ["python", "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)]
    command.extend(options)
    proc = subprocess.Popen(
        [*launcher, *command, "--log-level", "warning"],
        cwd=app_dir,
        env=child_env(app_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"uvicorn exited with {proc.returncode}:\n{out}\n{err}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("uvicorn did not accept connections within 60 s")
            time.sleep(0.05)


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes to kill if a test fails before stopping them."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("launcher", LAUNCHERS.values(), ids=LAUNCHERS.keys())
def test_uvicorn_under_the_launcher_is_traced_until_ctrl_c(
    launcher: list[str], app_dir: Path, stop: list[subprocess.Popen[str]]
) -> None:
    """Requests to a launched uvicorn are recorded with engines; Ctrl-C writes the summary
    and prints the account."""
    port = free_port()
    proc = start_uvicorn(launcher, app_dir, port)
    stop.append(proc)
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/items/7", timeout=10).json() == 7
    assert httpx.get(f"{base}/report", timeout=10).json() == 1
    # Flushed per request, so readable while serving (a record closes just after its
    # response is sent: wait for it).
    deadline = time.monotonic() + 30
    while len(by_type(app_dir / "trace.jsonl").get("request", [])) < 2:
        assert time.monotonic() < deadline, "the requests never reached the trace file"
        time.sleep(0.05)
    live = by_type(app_dir / "trace.jsonl")
    assert [r["path"] for r in live["request"]] == ["/items/7", "/report"]
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)

    records = by_type(app_dir / "trace.jsonl")
    engines = {
        e["id"]: (e["database"], e["created_at"], e["created_phase"], e["is_test"])
        for e in records["engine"]
    }
    assert engines == {
        "e1": ("test_app.db", "app.py:6", "import", True),
        "e2": ("prod.db", "app.py:7", "import", False),
    }
    requests = [
        (
            r["method"],
            r["path"],
            r["route"],
            r["status"],
            r["test"],
            [(d["engine_id"], d["via"], d["statements"]) for d in r["databases"]],
            sorted(f["code"] for f in r["findings"]),
        )
        for r in records["request"]
    ]
    assert requests == [
        ("GET", "/items/7", "/items/{n}", 200, None, [("e1", "conn", 1)], []),
        ("GET", "/report", "/report", 200, None, [("e2", None, 1)], ["DI_BYPASS", "WRONG_DB"]),
    ]
    summary = records["summary"][-1]
    assert (summary["requests"], summary["wrong_db_requests"], summary["engines"]) == (2, 1, 2)
    assert summary["internal_errors"] == 0
    lines = account(stderr)
    assert lines[0].startswith("depstrace: 1 of 2 requests reached a non-test database")
    assert lines[0].endswith(f"Trace: {app_dir / 'trace.jsonl'}")
    assert "    GET /report -> 200 in (outside any test)" in lines
    assert any(line.lstrip().startswith("DI_BYPASS ") for line in lines)


def test_uvicorn_reload_child_writes_its_own_file(
    app_dir: Path, stop: list[subprocess.Popen[str]]
) -> None:
    """With ``--reload`` the serving child writes ``trace-<pid>.jsonl`` with the requests
    and its account; the reloader keeps ``trace.jsonl`` with none."""
    port = free_port()
    launcher = [*LAUNCHERS["console-script"]]
    proc = start_uvicorn([*launcher], app_dir, port, "--reload")
    stop.append(proc)
    deadline = time.monotonic() + 60
    while True:  # the reloader listens before its child serves
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/items/5", timeout=10).json() == 5
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the reload child never answered"
            time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    children = list(app_dir.glob("trace-*.jsonl"))  # the resource tracker leaves none
    assert len(children) == 1
    child = by_type(children[0])
    assert [r["path"] for r in child["request"]] == ["/items/5"]
    assert [s["requests"] for s in child["summary"]] == [1]
    main_file = by_type(app_dir / "trace.jsonl")
    assert ("request" not in main_file, [s["requests"] for s in main_file["summary"]]) == (
        True,
        [0],
    )
    assert f"depstrace: 1 request, all on test databases. Trace: {children[0]}" in (
        stderr.splitlines()
    )


def test_sigterm_to_uvicorn_still_writes_the_summary(
    app_dir: Path, stop: list[subprocess.Popen[str]]
) -> None:
    """uvicorn hands SIGTERM back after its shutdown; depstrace reports, then the process
    dies by SIGTERM as it would have."""
    port = free_port()
    proc = start_uvicorn(LAUNCHERS["console-script"], app_dir, port)
    stop.append(proc)
    assert httpx.get(f"http://127.0.0.1:{port}/items/1", timeout=10).json() == 1
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    summary = by_type(app_dir / "trace.jsonl")["summary"]
    assert [(s["requests"], s["wrong_db_requests"]) for s in summary] == [(1, 0)]
    assert account(stderr)[0].startswith("depstrace: 1 request, all on test databases.")


def test_sigterm_to_a_program_without_a_handler(
    app_dir: Path, stop: list[subprocess.Popen[str]]
) -> None:
    """A program that leaves SIGTERM to the default still gets its summary and account."""
    (app_dir / "serve_once.py").write_text(
        "import sys, time\nfrom client import get\n"
        "print(get('/items/3'), flush=True)\ntime.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [*LAUNCHERS["python-m"], "python", "serve_once.py"],
        cwd=app_dir,
        env=child_env(app_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "3\n"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    records = by_type(app_dir / "trace.jsonl")
    assert [r["path"] for r in records["request"]] == ["/items/3"]
    assert len(records["summary"]) == 1
    assert account(stderr)[0].startswith("depstrace: 1 request, all on test databases.")


def test_each_process_writes_its_own_file(app_dir: Path) -> None:
    """A Python child process and a forked child are traced too, each into
    ``trace-<pid>.jsonl``; the launched process keeps ``trace.jsonl`` to itself, and a
    child that saw nothing leaves no file."""
    (app_dir / "parent.py").write_text(
        """\
import os, subprocess, sys
from client import get

child = subprocess.run([sys.executable, "-c", "import os; from client import get; get('/items/2'); print(os.getpid())"],
                       capture_output=True, text=True, check=True)
print("spawned", child.stdout.strip())
subprocess.run([sys.executable, "-c", "pass"], check=True)  # a helper: traced, no file
get("/items/1")
pid = os.fork()
if pid == 0:
    get("/report")
    sys.exit(0)
os.waitpid(pid, 0)
print("forked", pid)
"""
    )
    result = subprocess.run(
        [*LAUNCHERS["console-script"], "python", "parent.py"],
        cwd=app_dir,
        env=child_env(app_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    pids = dict(line.split() for line in result.stdout.splitlines())
    main_file = by_type(app_dir / "trace.jsonl")
    spawned = by_type(app_dir / f"trace-{pids['spawned']}.jsonl")
    forked = by_type(app_dir / f"trace-{pids['forked']}.jsonl")
    assert [r["path"] for r in main_file["request"]] == ["/items/1"]
    assert [r["path"] for r in spawned["request"]] == ["/items/2"]
    assert [r["path"] for r in forked["request"]] == ["/report"]
    for records in (main_file, spawned, forked):
        assert len(records["session"]) == 1
        assert len(records["summary"]) == 1
    assert [
        s["requests"] for s in main_file["summary"] + spawned["summary"] + forked["summary"]
    ] == [1, 1, 1]
    assert sorted(p.name for p in app_dir.glob("trace*.jsonl")) == sorted(
        ["trace.jsonl", f"trace-{pids['spawned']}.jsonl", f"trace-{pids['forked']}.jsonl"]
    )


def test_an_existing_sitecustomize_still_runs(tmp_path: Path) -> None:
    """depstrace's sitecustomize runs the one it hides before instrumenting."""
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "sitecustomize.py").write_text(
        "import os, sys\nos.environ['CHAINED'] = 'yes'\nsys.path.append('/chained-entry')\n"
    )
    probe = (
        "import os, sys, depstrace; "
        "print(os.environ.get('CHAINED'), '/chained-entry' in sys.path, depstrace.is_instrumented())"
    )
    result = subprocess.run(
        [*LAUNCHERS["python-m"], sys.executable, "-c", probe],
        cwd=tmp_path,
        env=child_env(tmp_path, PYTHONPATH=str(custom)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == "yes True True\n"


def test_a_bad_setting_in_the_launched_process_fails_open(tmp_path: Path) -> None:
    """Started outside the launcher with a bad DEPSTRACE, the program runs untraced and says so."""
    probe = "import depstrace; print('ran', depstrace.is_instrumented())"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=child_env(tmp_path, PYTHONPATH=str(BOOTSTRAP_DIR), DEPSTRACE="maybe"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == "ran False\n"
    assert result.stderr.startswith("depstrace: DEPSTRACE='maybe' is not a valid value.")
    assert result.stderr.rstrip().endswith("(the program runs without tracing)")


def test_exec_failure_exits_126(tmp_path: Path) -> None:
    """A file that is executable but no program is reported with status 126."""
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"\x7fELF not really")
    bogus.chmod(0o755)
    result = subprocess.run(
        [*LAUNCHERS["python-m"], str(bogus)],
        check=False,
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (
        126,
        f"depstrace run: cannot run {bogus}: Exec format error\n",
    )


# -- in process: what happens before exec ---------------------------------------------


@pytest.mark.parametrize("argv", [["run"], ["run", "--"]])
def test_no_command_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """``depstrace run`` without a command exits 2 and says how to call it."""
    assert main(argv) == 2
    assert capsys.readouterr() == (
        "",
        "usage: depstrace run [--] COMMAND [ARGS ...]\n"
        "depstrace run: error: no command given after '--'\n",
    )


def test_unknown_command_exits_127(capsys: pytest.CaptureFixture[str]) -> None:
    """A command that is not on PATH exits 127, like a shell."""
    assert main(["run", "--", "depstrace-no-such-command"]) == 127
    assert capsys.readouterr() == (
        "",
        "depstrace run: command not found: depstrace-no-such-command\n",
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DEPSTRACE_LOG_LEVEL", "loud", "DEPSTRACE_LOG_LEVEL='loud' is not a valid level."),
        ("DEPSTRACE_LOG_FORMAT", "xml", "DEPSTRACE_LOG_FORMAT='xml' is not a valid format."),
        ("DEPSTRACE_EXPORTER", "jaeger", "DEPSTRACE_EXPORTER='jaeger' is not a valid value."),
        (
            "DEPSTRACE_TEST_DB",
            "re:(",
            "DEPSTRACE_TEST_DB pattern 're:(' is not a valid regular expression",
        ),
    ],
)
def test_bad_settings_stop_the_launcher(
    variable: str,
    value: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bad depstrace setting exits 2 before the command starts, naming the variable."""
    monkeypatch.setenv(variable, value)
    assert main(["run", "--", "depstrace-no-such-command"]) == 2  # never exec from pytest
    out, err = capsys.readouterr()
    assert (out, err.startswith(f"depstrace run: {message}")) == ("", True)


def test_prepare_builds_the_child_environment(tmp_path: Path) -> None:
    """The child gets DEPSTRACE=1, the bootstrap first on PYTHONPATH (once), an absolute
    trace file and the launcher's pid."""
    environ = {
        "PATH": str(BIN),
        "PYTHONPATH": f"/somewhere{os.pathsep}{BOOTSTRAP_DIR}",
        "DEPSTRACE": "0",
        "DEPSTRACE_FILE": "rel/trace.jsonl",
    }
    launch = prepare(["--", "python", "-m", "uvicorn", "app:app"], environ, pid=4242)
    assert launch == Launch(
        executable=str(BIN / "python"),
        argv=["python", "-m", "uvicorn", "app:app"],
        env={
            "PATH": str(BIN),
            "PYTHONPATH": f"{BOOTSTRAP_DIR}{os.pathsep}/somewhere",
            "DEPSTRACE": "1",
            "DEPSTRACE_FILE": str(Path.cwd() / "rel" / "trace.jsonl"),
            RUN_PID_VAR: "4242",
        },
    )


def test_pytest_is_left_to_the_plugin() -> None:
    """``depstrace run -- pytest`` only enables the plugin: no bootstrap, no file chosen."""
    launch = prepare(["python", "-m", "pytest", "-q"], {"PATH": str(BIN)}, pid=1)
    assert launch.env == {"PATH": str(BIN), "DEPSTRACE": "1"}
    assert [
        runs_pytest(c)
        for c in (
            ["pytest"],
            ["py.test", "-x"],
            ["python3", "-mpytest"],
            ["python", "-m", "uvicorn"],
            ["uvicorn"],
        )
    ] == [True, True, True, False, False]


SERVED_FROM_ENV = """\
import os
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI

engine = sa.create_engine(os.environ["DATABASE_URL"])
with engine.connect() as conn:  # a warm-up query at start: outside any request
    conn.execute(sa.text("SELECT 1"))
app = FastAPI(title="served")


def get_conn():
    with engine.connect() as conn:
        yield conn


@app.get("/items")
def items(conn: Annotated[sa.Connection, Depends(get_conn)]) -> int:
    return conn.execute(sa.text("SELECT 1")).scalar_one()
"""


def test_findings_of_a_launched_server_speak_of_requests_and_the_server(
    tmp_path: Path, prod_dir: Path
) -> None:
    """Under ``depstrace run`` no message or fix mentions tests, fixtures or conftest: the
    fixes name the server's configuration, its lifespan and its environment."""
    (tmp_path / "app.py").write_text(SERVED_FROM_ENV)
    (tmp_path / "client.py").write_text(CLIENT)
    url = f"sqlite:///{prod_dir / 'prod.db'}"
    result = subprocess.run(
        [*LAUNCHERS["console-script"], "python", "-c", "from client import get; get('/items')"],
        cwd=tmp_path,
        env=child_env(tmp_path, DATABASE_URL=url, DEPSTRACE_LOG_LEVEL="off"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    records = by_type(tmp_path / "trace.jsonl")
    (request,) = records["request"]
    findings = [*request["findings"], *records["finding"]]
    assert [(f["code"], f["message"], f["hint"]) for f in findings] == [
        (
            "WRONG_DB",
            f"GET /items ran 1 statement on {url} (engine e1, created at app.py:7 during "
            "import) through dependency 'conn' (app:get_conn); it is not a test database. "
            "The engine was built at import time, from whatever configuration the process "
            "held then: create it lazily (a cached factory) or from settings read in the "
            "app's lifespan",
            "Make app:get_conn provide a session on the intended database (build its "
            "engine from the server's configuration); if GET /items may use this database, "
            "say so with DEPSTRACE_TEST_DB.",
        ),
        (
            "ENGINE_FROM_ENV",
            f"GET /items: engine e1 ({url}, created at app.py:7 during import) was built "
            "from the environment: $DATABASE_URL holds exactly this URL (value not shown). "
            "$DATABASE_URL was already set when the server started (exported by the shell, "
            "a CI job or a process manager) and kept that value",
            "Change or unset $DATABASE_URL where the server gets its environment (the shell, "
            "the process manager, a .env file) and restart it, or build settings and engines "
            "from a source that the server's configuration controls.",
        ),
        (
            "DB_OUTSIDE_REQUEST",
            f"1 statement ran on {url} (engine e1, created at app.py:7 during import) "
            "outside any request, in the server process (runtime): the app's "
            "lifespan/startup, code run at import or a background thread used a non-test "
            "database directly. Reached from app.py:9 in app:<module>(), through "
            "module-level app.conn.",
            "Point the engine used by startup code and background work at the intended "
            "database, or create it from the server's configuration.",
        ),
    ]
    words = ("test configuration", "fixture", "conftest", "pytest", "TestClient", "phase of")
    account_text = "\n".join(account(result.stderr)).replace(str(tmp_path), "<tmp>")
    assert [w for w in words if w in account_text] == [], account_text
