"""Outbound calls in the end-of-run account: a pytest run in a subprocess (pytester)."""

from __future__ import annotations

import json

import pytest

APP = """
import fakeredis
import httpx
from fastapi import FastAPI

app = FastAPI(title="weather")
cache = fakeredis.FakeRedis()

def forecast():
    return httpx.get("https://api.weather.invalid/v1/today?key=s3cret", timeout=2)

@app.get("/weather")
def weather() -> str:
    try:
        forecast()
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return "answered"

@app.get("/cached")
def cached() -> int:
    return int(cache.incr("hits"))
"""

TESTS = """
import httpx
import pytest
from unittest import mock
from fastapi.testclient import TestClient
import app as weather_app

client = TestClient(weather_app.app)

@pytest.fixture
def warm_up():
    try:
        httpx.get("http://billing.invalid/warm", timeout=2)
    except httpx.HTTPError:
        pass

def test_weather():
    assert client.get("/weather").json() == "ConnectError"

def test_weather_mocked():
    with mock.patch.object(weather_app, "forecast"):
        assert client.get("/weather").json() == "answered"

def test_cached(warm_up):
    assert client.get("/cached").json() == 1
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """An app calling an external API (a .invalid host: it never resolves) and fakeredis."""
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB", "DEPSTRACE_ALLOW_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    pytester.makepyfile(app=APP, test_app=TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    return pytester


def test_the_account_names_external_calls(suite: pytest.Pytester) -> None:
    """EXTERNAL_CALL in a request and in a fixture (outside any request) are error
    findings of the account; the mocked helper made no call; fakeredis is a test store."""
    result = suite.runpytest_subprocess("--depstrace", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    # The trace's path may wrap onto a line of its own (pytest-xdist's longer tmp paths).
    result.stdout.fnmatch_lines(
        [
            "depstrace: 3 requests in 3 tests, all on test databases, but 2 error findings "
            "(EXTERNAL_CALL) below. Trace:*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "other findings:",
            "  EXTERNAL_CALL  1 request in 1 test",
            "    in GET /weather in test_app.py::test_weather",
            "    GET /weather called https://api.weather.invalid:443 (GET 1) through httpx: "
            "api.weather.invalid is not a loopback host, the call went to no fake or test "
            "transport, and DEPSTRACE_ALLOW_HOSTS does",
            "*",
            "    fix  Give the code that makes this call a test double: *",
            "*DEPSTRACE_ALLOW_HOSTS=api.weather.invalid.",
            "  EXTERNAL_CALL  1 time in 1 test",
            "    in test_app.py::test_cached",
            "    http://billing.invalid:80 (GET 1) through httpx was called outside any request, "
            "during the setup of function-scoped fixture 'warm_up' (test_app.py:9) for "
            "test_app.py::test_cached: billing.invalid",
            "*",
            "*",
            "    fix  *",
            "*DEPSTRACE_ALLOW_HOSTS=billing.invalid.",
            "",
            "why:",
            "  EXTERNAL_CALL x2  a call left the machine for a host no fake, loopback address or "
            "DEPSTRACE_ALLOW_HOSTS pattern covers (depstrace explain EXTERNAL_CALL)",
        ],
        consecutive=True,
    )
    trace = (suite.path / ".depstrace" / "trace.jsonl").read_text()
    assert "s3cret" not in trace
    records = [json.loads(line) for line in trace.splitlines()]
    calls = {r["test"]: r["calls"] for r in records if r["type"] == "request"}
    assert {
        test: [(c["target"], c["allowed"]) for c in found] for test, found in calls.items()
    } == {
        "test_app.py::test_weather": [("https://api.weather.invalid:443", False)],
        "test_app.py::test_weather_mocked": [],  # the patched helper made no call
        "test_app.py::test_cached": [("redis database 0 (fake: fakeredis)", True)],
    }


def test_allowed_hosts_make_a_clean_run(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the hosts on DEPSTRACE_ALLOW_HOSTS the same run is clean."""
    monkeypatch.setenv("DEPSTRACE_ALLOW_HOSTS", "*.invalid")
    result = suite.runpytest_subprocess("--depstrace", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["depstrace: 3 requests in 3 tests, all on test databases. Trace: *"], consecutive=True
    )
    assert "EXTERNAL_CALL" not in result.stdout.str()


def test_xdist_workers_read_as_one_run(suite: pytest.Pytester) -> None:
    """Under pytest-xdist the controller's account has both findings, the one a worker's
    fixture made outside any request included."""
    result = suite.runpytest_subprocess("--depstrace", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "depstrace: 3 requests in 3 tests, all on test databases, but 2 error findings "
            "(EXTERNAL_CALL) below. Trace:*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["  EXTERNAL_CALL  1 request in 1 test", "  EXTERNAL_CALL  1 time*"]
    )
