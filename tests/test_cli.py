"""``depstrace report``: several files and globs as one run, damaged input, exit statuses."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from shop_suite import account, write_suite
from sqlalchemy.orm import Session

import depstrace
from depstrace.cli import REPORT_EPILOG, main


@pytest.fixture
def serve(tmp_path: Path, prod_dir: Path) -> Callable[..., Path]:
    """``serve(*paths)``: the trace file of those requests (see :func:`traced_requests`)."""
    return lambda *paths: traced_requests(tmp_path / "trace.jsonl", tmp_path, prod_dir, *paths)


def traced_requests(trace: Path, data: Path, prod_dir: Path, *paths: str) -> Path:
    """Serve ``paths`` traced into ``trace``: /items through an override to test_app.db,
    /stats on prod.db (outside pytest's temporary directories) outside Depends, /health
    on no database."""
    prod = sa.create_engine(f"sqlite:///{prod_dir / 'prod.db'}")
    test = sa.create_engine(f"sqlite:///{data / 'test_app.db'}")

    def get_db() -> Iterator[Session]:
        with Session(prod) as session:
            yield session

    def get_test_db() -> Iterator[Session]:
        with Session(test) as session:
            yield session

    app = FastAPI(title="cli")
    db_session = Depends(get_db)

    @app.get("/items")
    def items(db: Session = db_session) -> int:
        return len(db.execute(sa.text("SELECT 1")).all())

    @app.get("/stats")
    def stats() -> int:
        with Session(prod) as session:
            return len(session.execute(sa.text("SELECT 1")).all())

    @app.get("/health")
    def health() -> str:
        return "ok"

    app.dependency_overrides[get_db] = get_test_db
    depstrace.instrument(trace_file=trace)
    try:
        with TestClient(app) as client:
            for path in paths:
                assert client.get(path).status_code == 200
    finally:
        depstrace.uninstrument()
        prod.dispose()
        test.dispose()
    return trace


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No structlog lines from the in-process traces, and no line wrapped to the width:
    the account's words are what is tested (tests/test_account.py tests the layout)."""
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "off")
    monkeypatch.setenv("COLUMNS", "1000")


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    """Run ``depstrace report ARGS``: exit status, stdout lines, stderr."""
    capsys.readouterr()
    status = main(["report", *args])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def test_shards_read_as_the_serial_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two shards (each file run on its own, as on two CI machines) given as files or a glob
    print the serial run's account; one shard alone misses what the other did."""
    write_suite(pytester, monkeypatch)
    serial = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    expected = account(serial.stdout.str())
    trace = pytester.path / ".depstrace" / "trace.jsonl"
    shards = pytester.path / "shards"
    for number, (tests, passed) in enumerate((("test_items.py", 4), ("test_users.py", 5)), 1):
        shard = shards / f"shard-{number}.jsonl"
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", tests, "--depstrace-file", str(shard)
        )
        result.assert_outcomes(passed=passed)

    status, lines, _ = report(capsys, str(shards / "shard-*.jsonl"))

    assert status == 1
    assert lines == [expected[0].replace(f"Trace: {trace}", "Trace: 2 files"), *expected[1:]]
    assert report(capsys, str(shards / "shard-1.jsonl"), str(shards / "shard-?.jsonl")) == (
        1,
        lines,
        "",
    )
    # Shard 1 has no test of /me, but the /me route depends on get_user: its override is
    # not unused, alone or merged.
    _, alone, _ = report(capsys, str(shards / "shard-1.jsonl"))
    unused = "*the override app:{} on app 'shop' * was never consulted by any request*"
    assert not fnmatch.filter(alone, unused.format("get_user -> conftest:fake_user"))
    assert fnmatch.filter(alone, unused.format("get_legacy_db -> conftest:override_get_db"))
    assert not fnmatch.filter(lines, unused.format("get_user -> conftest:fake_user"))
    assert fnmatch.filter(lines, unused.format("get_legacy_db -> conftest:override_get_db"))


def test_clean_trace_exits_0(
    serve: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Requests on the test database only: one line, exit 0."""
    trace = serve("/items", "/items", "/health")
    assert report(capsys, str(trace)) == (
        0,
        [f"depstrace: 3 requests, all on test databases. Trace: {trace}"],
        "",
    )


def test_empty_file_is_no_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty trace says no requests were recorded and exits 3, never clean."""
    trace = tmp_path / "trace.jsonl"
    trace.write_text("")
    assert report(capsys, str(trace)) == (
        3,
        [f"depstrace: no requests recorded. Trace: {trace}"],
        "",
    )


def test_cut_last_line_is_reported_with_its_byte_count(
    serve: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A last line cut mid-record is named with its length; the rest is read, and the
    run is not called clean (exit 2)."""
    trace = serve("/items", "/items")
    lines = trace.read_bytes().splitlines(keepends=True)
    trace.write_bytes(b"".join(lines[:-1]) + lines[-1][:30])  # the summary, cut

    assert report(capsys, str(trace)) == (
        2,
        [
            "depstrace: 2 requests, all on test databases, but an incomplete trace below. "
            f"Trace: {trace}",
            f"{trace}: last line cut after 30 bytes (a process killed mid-write?); "
            f"{len(lines) - 1} complete records read",
            f"{trace}: no summary record: the run it traces did not finish (killed?) or is "
            "still running; what it did after its last flush is missing",
        ],
        "",
    )


def test_cut_line_does_not_hide_findings(
    serve: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged trace that shows a request on a non-test database still exits 1."""
    trace = serve("/stats", "/items")
    text = trace.read_bytes()
    trace.write_bytes(text[:-10])
    status, lines, _ = report(capsys, str(trace))
    assert status == 1
    assert lines[0] == f"depstrace: 1 of 2 requests reached a non-test database. Trace: {trace}"
    assert lines[1].startswith(f"{trace}: last line cut after ")


def test_malformed_lines_and_records_are_named(
    serve: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad line, a record without ``databases`` and a field of the wrong type are each
    named by file, line and field and left out; the others are read (exit 2)."""
    trace = serve("/items", "/items", "/items")
    lines = trace.read_text().splitlines()
    numbers = [i for i, line in enumerate(lines) if json.loads(line)["type"] == "request"]
    first, second = (json.loads(lines[i]) for i in numbers[:2])
    del first["databases"]
    second["databases"][0]["is_test"] = "yes"
    lines[numbers[0]], lines[numbers[1]] = json.dumps(first), json.dumps(second)
    lines.insert(1, '{"type": "engine", "id": ')
    trace.write_text("\n".join(lines) + "\n")

    assert report(capsys, str(trace)) == (
        2,
        [
            "depstrace: 1 request, all on test databases, but an incomplete trace below. "
            f"Trace: {trace}",
            f"{trace}:2: not a JSON object (Expecting value)",
            f'{trace}:{numbers[0] + 2}: request record: field "databases" is missing',
            f'{trace}:{numbers[1] + 2}: request record: field "databases[0].is_test" should '
            'be true or false, not "yes"',
        ],
        "",
    )


def test_unreadable_paths(
    serve: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file, a directory or a glob matching nothing exits 2 with the reason on
    stderr; next to a readable file, the reason joins the account."""
    missing = tmp_path / "missing.jsonl"
    assert report(capsys, str(missing)) == (
        2,
        [],
        f"depstrace: {missing}: cannot read: No such file or directory\n",
    )
    assert report(capsys, str(tmp_path)) == (
        2,
        [],
        f"depstrace: {tmp_path}: cannot read: Is a directory\n",
    )
    pattern = str(tmp_path / "shard-*.jsonl")
    assert report(capsys, pattern) == (2, [], f"depstrace: no file matches {pattern!r}\n")
    trace = serve("/items")
    assert report(capsys, str(trace), str(missing)) == (
        2,
        [
            "depstrace: 1 request, all on test databases, but an incomplete trace below. "
            "Trace: 2 files",
            f"{missing}: cannot read: No such file or directory",
        ],
        "",
    )


def test_closed_pipe_ends_quietly(serve: Callable[..., Path], tmp_path: Path) -> None:
    """``depstrace report ... | head -1`` prints one line, no traceback, and keeps its status."""
    trace = serve(*["/stats"] * 200)
    script = (  # --verbose: a paragraph per request, far more than a pipe holds
        f'"{sys.executable}" -m depstrace report --verbose "{trace}" | head -n 1; '
        'echo "status ${PIPESTATUS[0]}" >&2'
    )
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert (done.stdout, done.stderr) == (
        f"depstrace: 200 of 200 requests reached a non-test database. Trace: {trace}\n",
        "status 1\n",
    )
    whole = subprocess.run(
        [sys.executable, "-m", "depstrace", "report", "--verbose", str(trace)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert len(whole.stdout) > 2 * 65536  # head closes the pipe long before the end


def test_help_lists_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    """``depstrace report --help`` documents what each exit status means."""
    with pytest.raises(SystemExit) as exited:
        main(["report", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: depstrace report [-h] [-v] [--format {text,markdown,json,html}]")
    assert out.endswith(REPORT_EPILOG)
    assert [line[:4] for line in REPORT_EPILOG.splitlines() if line[2:3].isdigit()] == [
        "  0 ",
        "  1 ",
        "  2 ",
        "  3 ",
    ]
