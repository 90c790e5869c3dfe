"""How fast the HTML report of a large run opens in Chromium: prints seconds, asserts nothing.

Builds a real trace (tests/report_traces.py), grows it to N requests, writes its page
with ``depstrace report --format html`` and opens it in Debian's headless Chromium
(``/usr/bin/chromium``, driven by playwright) several times: the time from navigation
to the table being built (the page sets ``body[data-ready]``), the best and the median.
With ``--screenshot PATH`` it also saves the small run's page, a request opened, as
the picture in docs/report.md.

    .venv/bin/python benchmarks/html_report.py [N] [--screenshot docs/html-report.png]
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("DEPSTRACE_LOG_LEVEL", "off")

from playwright.sync_api import sync_playwright
from report_traces import grow, make_trace

from depstrace.cli import main as cli

ROUNDS = 5


def build(directory: Path, requests: int) -> tuple[Path, Path]:
    """The small run's page and the page of ``requests`` requests."""
    prod = directory / "prod"
    prod.mkdir()
    small = make_trace(directory / "small.jsonl", directory, prod)
    grow(small, directory / "big.jsonl", requests=requests)
    for name in ("small", "big"):
        cli(["report", str(directory / f"{name}.jsonl"), "--format", "html", "-o",
             str(directory / f"{name}.html")])  # fmt: skip
    return directory / "small.html", directory / "big.html"


def main() -> None:
    args = sys.argv[1:]
    screenshot = None
    if "--screenshot" in args:
        at = args.index("--screenshot")
        screenshot = Path(args[at + 1])
        del args[at : at + 2]
    requests = int(args[0]) if args else 10_000
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        small, big = build(Path(tmp), requests)
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-background-networking"],
        )
        seconds = []
        for _ in range(ROUNDS):
            page = browser.new_page()
            started = time.perf_counter()
            page.goto(big.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            seconds.append(time.perf_counter() - started)
            page.close()
        size = big.stat().st_size / 1024 / 1024
        print(f"{requests} requests, page {size:.1f} MB: opened in best {min(seconds):.2f} s, "
              f"median {statistics.median(seconds):.2f} s over {ROUNDS} rounds")  # fmt: skip
        if screenshot is not None:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(small.as_uri())
            page.wait_for_selector("body[data-ready='1']")
            page.locator("#requests tbody tr", has_text="GET /items").first.click()
            page.screenshot(path=str(screenshot), full_page=True)
            print(f"screenshot: {screenshot}")
        browser.close()


if __name__ == "__main__":
    main()
