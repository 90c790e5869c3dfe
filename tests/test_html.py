"""The HTML report opened in a real headless Chromium (Debian's /usr/bin/chromium driven by
playwright; never a downloaded browser): asserted through the DOM."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from report_traces import HOSTILE, HOSTILE_PATH, LATE, PURGE, STATS, WARM, WEATHER, grow, make_trace

from depstrace.cli import main
from depstrace.explain import page as explanation

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module; skipped (or failed, with
    DEPSTRACE_REQUIRE_CHROMIUM=1) when Chromium or playwright is missing."""
    reason = None
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        reason = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (the test extra)"
    if reason is not None:
        if os.environ.get("DEPSTRACE_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"DEPSTRACE_REQUIRE_CHROMIUM=1 but {reason}")
        pytest.skip(reason)
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def pages(
    tmp_path_factory: pytest.TempPathFactory, make_prod_dir: Callable[[], Path]
) -> dict[str, Path]:
    """The page of tests/report_traces.py's trace and of 10,000 requests grown from it."""
    data = tmp_path_factory.mktemp("html")
    trace = make_trace(data / "trace.jsonl", data, make_prod_dir())
    grow(trace, data / "big.jsonl", requests=10_000)
    made = {}
    for name in ("trace", "big"):
        made[name] = data / f"{name}.html"
        assert (
            main(["report", str(data / f"{name}.jsonl"), "--format", "html", "-o", str(made[name])])
            == 1
        )
    return made


@pytest.fixture
def opened(browser: Any) -> Callable[[Path], Any]:
    """``opened(path)``: a new page showing ``path``, ready; dialogs and errors are kept on
    ``page.dialogs`` / ``page.errors`` (the tests assert there are none)."""
    contexts = []

    def open_page(path: Path) -> Any:
        context = browser.new_context(viewport={"width": 1300, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.dialogs, page.errors, page.requests = [], [], []
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on("request", lambda request: page.requests.append(request.url))
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        return page

    yield open_page
    for context in contexts:
        context.close()


def texts(page: Any, selector: str) -> list[str]:
    """The text of every element ``selector`` matches, stripped."""
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def test_findings_table(opened: Callable[[Path], Any], pages: dict[str, Path]) -> None:
    """One row per code with its count, tests, messages, fix and explanation page."""
    page = opened(pages["trace"])
    assert texts(page, "#findings tbody tr td:first-child") == [
        "WRONG_DB",
        "DI_BYPASS",
        "EXTERNAL_CALL",
    ]
    assert texts(page, "#findings tbody tr td.count") == ["4", "2", "1"]
    row = page.locator("#findings tr[data-code='DI_BYPASS']")
    assert "tests/test_stats.py::test_stats" in row.inner_text()
    assert "Fix: Take the session from a dependency" in row.inner_text()
    row.locator("details.explain summary").click()
    explained = row.locator("details.explain pre").inner_text()
    assert explained.strip() == (explanation("DI_BYPASS") or "").strip()
    external = page.locator("#findings tr[data-code='EXTERNAL_CALL']")
    assert "GET /weather called http://api.weather.invalid:8081 (GET 1)" in external.inner_text()
    external.locator("details.explain summary").click()
    assert external.locator("details.explain pre").inner_text().strip() == (
        (explanation("EXTERNAL_CALL") or "").strip()
    )
    assert page.locator("#headline").inner_text() == (
        f"depstrace: 4 of 8 requests reached a non-test database, in 4 tests. Trace: "
        f"{pages['trace'].with_suffix('.jsonl')}"
    )
    assert (page.dialogs, page.errors) == ([], [])
    assert [url for url in page.requests if not url.startswith("file://")] == []


def test_filters(opened: Callable[[Path], Any], pages: dict[str, Path]) -> None:
    """Test, finding code and database filters narrow the table, together too."""
    page = opened(pages["trace"])

    def shown() -> list[str]:
        return texts(page, "#requests tbody tr td:nth-child(2)")

    assert shown() == [
        "GET /items",
        "GET /items",
        "GET /stats",
        "GET /admin",
        f"GET {HOSTILE_PATH}",
        "GET /weather",
        "GET /late",
        "GET /purge",
    ]
    page.fill("#filter-test", "test_items")
    assert shown() == ["GET /items", "GET /items"]
    page.fill("#filter-test", "")
    page.select_option("#filter-code", "DI_BYPASS")
    assert shown() == ["GET /stats", f"GET {HOSTILE_PATH}"]
    page.select_option("#filter-code", "-")
    assert shown() == ["GET /items", "GET /items", "GET /late"]
    page.select_option("#filter-code", "")
    prod = next(o for o in texts(page, "#filter-db option") if o.endswith("prod.db"))
    page.select_option("#filter-db", prod)
    assert shown() == ["GET /stats", "GET /admin", f"GET {HOSTILE_PATH}", "GET /purge"]
    page.fill("#filter-test", "admin")
    assert shown() == ["GET /admin"]
    assert page.locator("#shown").inner_text() == "1 request match"
    # Clicking a code in the findings table filters by it.
    page.fill("#filter-test", "")
    page.select_option("#filter-db", "")
    page.locator("#findings tr[data-code='WRONG_DB'] .code").click()
    assert page.locator("#filter-code").input_value() == "WRONG_DB"
    assert shown() == ["GET /stats", "GET /admin", f"GET {HOSTILE_PATH}", "GET /purge"]
    # Outbound calls: any, not allowed, none, one target.
    page.select_option("#filter-code", "")
    page.select_option("#filter-calls", "*")
    assert shown() == ["GET /weather"]
    page.select_option("#filter-calls", "!")
    assert shown() == ["GET /weather"]
    page.select_option("#filter-calls", "http://api.weather.invalid:8081")
    assert shown() == ["GET /weather"]
    page.select_option("#filter-calls", "-")
    assert "GET /weather" not in shown()
    assert len(shown()) == 7


def test_dependency_tree_with_an_override(
    opened: Callable[[Path], Any], pages: dict[str, Path]
) -> None:
    """A request's tree nests get_db below Repo and shows original -> override, where
    the override was set, the cached second use, durations, the session and engine."""
    page = opened(pages["trace"])
    page.locator("#requests tbody tr", has_text="GET /items").first.click()
    detail = page.locator("#detail")
    assert detail.is_visible()
    prefix = "report_traces:make_trace.<locals>"
    nested = detail.locator("ul.tree > li.dep > ul > li.dep.overridden")
    assert (
        nested.locator(".override").inner_text() == f"{prefix}.get_db \u2192 {prefix}.get_test_db"
    )
    assert detail.locator("ul.tree > li.dep > .name").all_inner_texts() == ["repo", "db"]
    assert nested.locator(".badge.value").inner_text() == "produced sqlalchemy.orm.session:Session"
    assert nested.locator(".badge.engine").inner_text().startswith("engine e1 sqlite:///")
    assert nested.locator(".badge", has_text=" ms").count() == 1
    cached = detail.locator("ul.tree > li.dep.cached")
    assert cached.locator(".name").inner_text() == "db"
    assert cached.locator(".badge.cached").inner_text() == "cached"
    assert "test_app.db [engine e1] test database" in detail.locator("ul.dbs").inner_text()


def test_outbound_calls_of_a_request(opened: Callable[[Path], Any], pages: dict[str, Path]) -> None:
    """GET /weather's calls: the local http.server (real, allowed) and the host that is
    not allowed, with their library, operations and verdict; the row flags the host."""
    page = opened(pages["trace"])
    row = page.locator("#requests tbody tr", has_text="GET /weather")
    assert row.locator(".call.external").inner_text() == "api.weather.invalid"
    assert row.locator(".call.allowed").inner_text() == "127.0.0.1"
    row.click()
    calls = page.locator("#detail #request-calls tbody tr")
    local, external = calls.nth(0), calls.nth(1)
    assert calls.count() == 2
    assert local.locator("td").all_inner_texts()[1:] == ["httpx (http)", "GET 1", "real", "yes"]
    assert local.locator("td.target").inner_text().startswith("http://127.0.0.1:")
    assert external.locator("td").all_inner_texts() == [
        "http://api.weather.invalid:8081",
        "httpx (http)",
        "GET 1",
        "real",
        "NOT allowed: EXTERNAL_CALL",
    ]
    assert "EXTERNAL_CALL" in page.locator("#detail .request-findings").inner_text()
    assert page.locator("#detail .order-effects").count() == 0


def test_order_effect_of_a_request(opened: Callable[[Path], Any], pages: dict[str, Path]) -> None:
    """GET /late used an engine an earlier test built: kind, object, that test, the site."""
    page = opened(pages["trace"])
    page.fill("#filter-test", LATE)
    page.locator("#requests tbody tr").first.click()
    effect = page.locator("#detail li.order-effect")
    assert effect.count() == 1
    said = effect.inner_text()
    assert said.startswith("engine e3 sqlite:///")
    assert f"made in {WARM} (call)" in said
    assert effect.locator(".site").inner_text().strip().startswith("at tests/report_traces.py:")
    assert said.endswith("behind dependency db")
    assert page.locator("#detail #request-calls").count() == 0


def test_guard_and_outside_calls_panels(
    opened: Callable[[Path], Any], pages: dict[str, Path]
) -> None:
    """The run panels: the guard's refusal (linked to its request) and allowed use, and
    the call the test body made outside any request."""
    page = opened(pages["trace"])
    assert page.locator("#guard-said").inner_text() == (
        "The guard (mode writes) refused 1 statement on non-test databases; 1 allowed use "
        "recorded (the first statement an allowance let through, per engine and test)."
    )
    refused = page.locator("#guard-refused tbody tr")
    assert refused.count() == 1
    cells = refused.locator("td").all_inner_texts()
    assert cells[:2] == ["DELETE", "hits"]
    assert cells[2].endswith("prod.db [engine e2]")
    assert cells[3:] == [PURGE, "call", "r8 GET /purge", "WRONG_DB"]
    allowed = page.locator("#guard-allowed tbody tr").locator("td").all_inner_texts()
    assert (allowed[0], allowed[3], allowed[6]) == (
        "CREATE",
        STATS,
        "depstrace.allow_db('*prod.db')",
    )
    refused.locator("button").click()
    assert page.locator("#detail h3").first.inner_text() == "r8 GET /purge \u2192 500"
    outside = page.locator("#outside-calls tbody tr")
    assert outside.count() == 1
    cells = outside.locator("td").all_inner_texts()
    assert cells[:3] == [WEATHER, "call", ""]
    assert cells[3].startswith("http://127.0.0.1:")
    assert cells[4:] == ["httpx (http)", "GET 1", "real", "yes"]
    assert (page.dialogs, page.errors) == ([], [])


def test_hostile_names_stay_text(opened: Callable[[Path], Any], pages: dict[str, Path]) -> None:
    """A test id and a path holding <script> and <img onerror> are shown as text: no
    element, no dialog, no script run from them."""
    page = opened(pages["trace"])
    page.fill("#filter-test", "alert(1)")
    assert texts(page, "#requests tbody tr td.test") == [HOSTILE]
    page.locator("#requests tbody tr").first.click()
    assert page.locator("#detail h3").first.inner_text().endswith(f"GET {HOSTILE_PATH} \u2192 200")
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.scripts.length") == 3
    assert (page.dialogs, page.errors) == ([], [])


def test_10000_requests_render_on_demand(
    opened: Callable[[Path], Any], pages: dict[str, Path]
) -> None:
    """10,000 requests: the table holds the first 200 rows, "show more" adds 200, and the
    filters still work over all of them (the time to open is in benchmarks/html_report.py)."""
    page = opened(pages["big"])
    assert page.locator("#total-requests b").inner_text() == "10,000"
    assert page.locator("#requests tbody tr").count() == 200
    assert page.locator("#shown").inner_text() == "10,000 requests match; showing the first 200"
    page.click("#more")
    assert page.locator("#requests tbody tr").count() == 400
    page.select_option("#filter-code", "WRONG_DB")
    assert page.locator("#shown").inner_text() == "400 requests match; showing the first 200"
    page.fill("#filter-test", "tests/test_module99.py::")
    assert page.locator("#requests tbody tr").count() == 4
    assert page.locator("#more").is_hidden()


PLUGIN_APP = """
import json
import os

import sqlalchemy as sa
from fastapi import FastAPI

prod = sa.create_engine(f"sqlite:///{os.environ['PROD_DIR']}/prod.db")
app = FastAPI()


@app.get("/purge")
def purge() -> int:
    with prod.begin() as connection:
        connection.execute(sa.text("DELETE FROM hits"))
    return 0
"""

PLUGIN_TESTS = """
import httpx
import pytest
from fastapi.testclient import TestClient

from app import app


def test_purge():
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/purge").status_code == 500


def test_body_calls_out():
    with pytest.raises(httpx.HTTPError):
        httpx.get("http://api.weather.invalid:8081/today", timeout=5)
"""


def test_the_plugins_page_has_the_guard_and_outside_calls_panels(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    make_prod_dir: Callable[[], Path],
    opened: Callable[[Path], Any],
) -> None:
    """--depstrace-html under DEPSTRACE_GUARD=writes: the page pytest writes lists the
    refused DELETE and the call the test body made outside any request."""
    for name in ("DEPSTRACE", "DEPSTRACE_FILE", "DEPSTRACE_TEST_DB", "DEPSTRACE_ALLOW_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEPSTRACE_GUARD", "writes")
    monkeypatch.setenv("DEPSTRACE_LOG_LEVEL", "off")
    monkeypatch.setenv("PROD_DIR", str(make_prod_dir()))
    pytester.makepyfile(app=PLUGIN_APP, test_app=PLUGIN_TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--depstrace-html=out.html")
    result.assert_outcomes(passed=2)
    page = opened(pytester.path / "out.html")
    refused = page.locator("#guard-refused tbody tr td").all_inner_texts()
    assert (refused[0], refused[1], refused[3]) == ("DELETE", "hits", "test_app.py::test_purge")
    assert refused[5] == "r1 GET /purge"
    outside = page.locator("#outside-calls tbody tr td").all_inner_texts()
    assert outside == [
        "test_app.py::test_body_calls_out",
        "call",
        "",
        "http://api.weather.invalid:8081",
        "httpx (http)",
        "GET 1",
        "real",
        "NOT allowed: EXTERNAL_CALL",
    ]
    assert "EXTERNAL_CALL" in texts(page, "#run-findings td:first-child")
    assert (page.dialogs, page.errors) == ([], [])


def test_a_trace_from_before_calls_and_the_guard(
    opened: Callable[[Path], Any], pages: dict[str, Path], tmp_path: Path
) -> None:
    """Requests without ``calls``/``order_effects`` and no guard or outside_calls records
    (a trace written before they existed): the page opens without their panels."""
    text = pages["trace"].with_suffix(".jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines()]
    old = tmp_path / "old.jsonl"
    with old.open("w", encoding="utf-8") as file:
        for record in records:
            if record["type"] in ("guard", "outside_calls"):
                continue
            for key in ("calls", "order_effects"):
                record.pop(key, None)
            file.write(json.dumps(record) + "\n")
    page_path = tmp_path / "old.html"
    assert main(["report", str(old), "--format", "html", "-o", str(page_path)]) == 1
    page = opened(page_path)
    assert page.locator("#guard-section, #outside-calls-section").count() == 0
    page.locator("#requests tbody tr", has_text="GET /weather").click()
    said = texts(page, "#detail p.muted")
    assert {"no outbound call", "nothing made by an earlier test"} <= set(said), said
    page.select_option("#filter-calls", "*")
    assert page.locator("#shown").inner_text() == "0 requests match"
    assert (page.dialogs, page.errors) == ([], [])
