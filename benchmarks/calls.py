"""Overhead of depstrace per outbound call: prints timings, asserts nothing.

Times calls made inside a request record (as a route would make them):
httpx through ``MockTransport``, requests through ``responses``, fakeredis,
mongomock and, when it is up, the real Redis on 127.0.0.1:6379; untraced and
traced, alternating rounds so load from other work on the machine spreads over
both.  Prints the median microseconds per call of each and the difference.

    .venv/bin/python benchmarks/calls.py [calls-per-round] [rounds]
"""

import statistics
import sys
import time
from collections.abc import Callable

import fakeredis
import httpx
import mongomock
import redis
import requests
import responses

import depstrace
from depstrace._context import current_request
from depstrace._records import RequestRecord


def workloads() -> dict[str, Callable[[], object]]:
    """One call of each kind."""
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    fake = fakeredis.FakeRedis()
    items = mongomock.MongoClient().bench.items
    items.insert_one({"a": 1})
    found: dict[str, Callable[[], object]] = {
        "httpx MockTransport GET": lambda: client.get("https://api.example.com/x"),
        "requests via responses GET": lambda: requests.get("https://api.example.com/r"),
        "fakeredis GET": lambda: fake.get("k"),
        "mongomock find_one": lambda: items.find_one({"a": 1}),
    }
    real = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1)
    try:
        real.ping()
        found["redis 127.0.0.1 GET"] = lambda: real.get("depstrace:bench")
    except redis.RedisError:
        print("no Redis on 127.0.0.1:6379: its row is left out")
    return found


def per_call(call: Callable[[], object], count: int) -> float:
    """Microseconds per call over ``count`` calls."""
    started = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    mocked = responses.RequestsMock(assert_all_requests_are_fired=False)
    mocked.start()
    mocked.add(responses.GET, "https://api.example.com/r", json=1)
    calls = workloads()
    times: dict[tuple[str, bool], list[float]] = {}
    record = RequestRecord(
        id="r1",
        type="http",
        method="GET",
        path="/",
        test=None,
        phase="call",
        app_id="app1",
        app_title="bench",
        trace_id=None,
    )
    token = current_request.set(record)
    try:
        for _ in range(rounds):
            for traced in (False, True):
                if traced:
                    depstrace.instrument(trace_file=None)
                try:
                    for name, call in calls.items():
                        per_call(call, count // 10)  # warm up
                        times.setdefault((name, traced), []).append(per_call(call, count))
                finally:
                    if traced:
                        depstrace.uninstrument()
                record.outbound.clear()
    finally:
        current_request.reset(token)
        mocked.stop()
    width = max(len(name) for name in calls)
    print(f"{'call':<{width}}  untraced µs  traced µs  difference")
    for name in calls:
        plain = statistics.median(times[(name, False)])
        traced = statistics.median(times[(name, True)])
        print(f"{name:<{width}}  {plain:11.1f}  {traced:9.1f}  {traced - plain:+9.1f}")


if __name__ == "__main__":
    main()
