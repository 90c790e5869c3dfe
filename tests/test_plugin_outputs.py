"""The pytest plugin's gate (--depstrace-fail-on) and HTML page (--depstrace-html), end to
end in a subprocess, set on the command line, in the environment or in the ini file."""

from __future__ import annotations

import pytest
from test_pytest_plugin import APP, CONFTEST, TESTS

from depstrace.gate import CODES

GATE = [
    "depstrace: {source} WRONG_DB,DI_BYPASS fails this run: WRONG_DB in 1 test, DI_BYPASS in "
    "1 test:",
    "  test_app.py::test_stats  WRONG_DB x1, DI_BYPASS x1",
]


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The plugin tests' app: /items through an override (clean), /stats outside Depends
    on prod.db (WRONG_DB, DI_BYPASS); tracing off unless a test turns it on."""
    data = pytester.path / "data"
    data.mkdir()
    monkeypatch.setenv("SCENARIO_DATA", str(data))
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB", "DEPSTRACE_FAIL_ON"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DEPSTRACE_HTML", raising=False)
    pytester.makepyfile(app=APP, conftest=CONFTEST, test_app=TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    return pytester


def gate_of(result: pytest.RunResult) -> list[str]:
    """The gate's lines of the account."""
    lines = result.stdout.lines
    start = next((i for i, line in enumerate(lines) if "fails this run" in line), len(lines))
    return [line for line in lines[start:] if line.startswith(("depstrace: ", "  test_"))][:2]


def test_fail_on_fails_the_run_and_names_the_tests(suite: pytest.Pytester) -> None:
    """--depstrace-fail-on enables tracing; every test passes, the run exits 1 and says why."""
    result = suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "--depstrace-fail-on=wrong_db,DI_BYPASS"
    )
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert gate_of(result) == [line.format(source="--depstrace-fail-on") for line in GATE]


def test_gate_on_codes_that_did_not_occur_passes(suite: pytest.Pytester) -> None:
    """Findings of other codes leave the exit status alone and the gate silent."""
    result = suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "--depstrace-fail-on=LOOP_MISMATCH"
    )
    assert result.ret == pytest.ExitCode.OK
    assert "fails this run" not in result.stdout.str()
    result.stdout.fnmatch_lines(["depstrace: 1 of 2 requests reached a non-test database*"])


def test_gate_from_the_environment(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """DEPSTRACE_FAIL_ON applies when tracing is on, and the message names the variable."""
    monkeypatch.setenv("DEPSTRACE", "1")
    monkeypatch.setenv("DEPSTRACE_FAIL_ON", "WRONG_DB,DI_BYPASS")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert gate_of(result) == [line.format(source="DEPSTRACE_FAIL_ON") for line in GATE]


def test_gate_from_the_ini_file_and_the_command_line_wins(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ini option gates a traced run; the command line replaces it."""
    suite.makeini("[pytest]\npythonpath = .\ndepstrace_fail_on = WRONG_DB, DI_BYPASS\n")
    monkeypatch.setenv("DEPSTRACE", "1")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert gate_of(result) == [line.format(source="depstrace_fail_on") for line in GATE]
    replaced = suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "--depstrace-fail-on=LOOP_MISMATCH"
    )
    assert replaced.ret == pytest.ExitCode.OK


def test_ini_gate_without_tracing_does_nothing(suite: pytest.Pytester) -> None:
    """Tracing off: the ini option patches nothing and changes no exit status."""
    suite.makeini("[pytest]\npythonpath = .\ndepstrace_fail_on = WRONG_DB\n")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    assert not (suite.path / ".depstrace").exists()
    assert "non-test database" not in result.stdout.str()


def test_a_failing_run_stays_failed(suite: pytest.Pytester) -> None:
    """A test failure and a gate: the exit status is still 1, the gate still speaks."""
    suite.makepyfile(test_fails="def test_fails():\n    assert False\n")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "--depstrace-fail-on=WRONG_DB")
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["depstrace: --depstrace-fail-on WRONG_DB fails this run*"])


def test_unknown_code_is_a_usage_error(suite: pytest.Pytester) -> None:
    """An unknown code stops the run before any test, listing the valid codes."""
    result = suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "--depstrace-fail-on=WRONG_DB,WRONG"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == (
        "ERROR: depstrace: --depstrace-fail-on='WRONG_DB,WRONG': unknown finding code WRONG. "
        f"Give one or more of, comma-separated: {', '.join(CODES)}."
    )


def test_html_report_from_the_command_line(suite: pytest.Pytester) -> None:
    """--depstrace-html enables tracing and writes one page, said in the account's last line."""
    result = suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "--depstrace-html=out/report.html"
    )
    page = suite.path / "out" / "report.html"
    assert result.ret == pytest.ExitCode.OK
    assert result.stdout.lines[-2] == f"depstrace: HTML report: {page}"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert '"test":"test_app.py::test_stats"' in text
    assert '"code":"DI_BYPASS"' in text


def test_html_report_from_the_environment_and_the_ini_file(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEPSTRACE_HTML (relative to the invocation directory) beats the ini option
    (relative to the rootdir)."""
    monkeypatch.setenv("DEPSTRACE", "1")
    suite.makeini("[pytest]\npythonpath = .\ndepstrace_html = ini.html\n")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines([f"depstrace: HTML report: {suite.path / 'ini.html'}"])
    monkeypatch.setenv("DEPSTRACE_HTML", "env.html")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines([f"depstrace: HTML report: {suite.path / 'env.html'}"])
    assert (suite.path / "env.html").stat().st_size > 0


def test_unwritable_html_path_costs_one_line(suite: pytest.Pytester) -> None:
    """A page that cannot be written (a directory in its place) is one warning line; the
    exit status is the run's."""
    (suite.path / "taken.html").mkdir()
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "--depstrace-html=taken.html")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["depstrace: no HTML report: IsADirectoryError: *taken.html*"])


def test_xdist_controller_gates_and_writes_the_whole_run(suite: pytest.Pytester) -> None:
    """Under pytest-xdist the controller's gate and page cover every worker's requests."""
    result = suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--depstrace-fail-on=WRONG_DB,DI_BYPASS",
        "--depstrace-html=report.html",
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert gate_of(result) == [line.format(source="--depstrace-fail-on") for line in GATE]
    text = (suite.path / "report.html").read_text(encoding="utf-8")
    assert text.count('"test":"test_app.py::test_items"') == 1
    assert text.count('"test":"test_app.py::test_stats"') == 1
    assert text.count('"worker":"gw') >= 2
