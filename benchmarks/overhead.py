"""Overhead of depstrace per request: prints timings and ratios, asserts nothing.

A FastAPI app with a 10-node dependency tree (one yield dependency with a
SQLite session, cached and overridden nodes) and 3 statements per request,
driven in-process through httpx.ASGITransport so only app + tracer time counts.

    .venv/bin/python benchmarks/overhead.py [requests]
"""

import asyncio
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session

import depstrace


def build(db_path: Path) -> FastAPI:
    engine = sa.create_engine(f"sqlite:///{db_path}")

    def get_db() -> Iterator[Session]:
        with Session(engine) as session:
            yield session

    def settings() -> dict[str, int]:
        return {"page": 10}

    async def user(cfg: Annotated[dict[str, int], Depends(settings)]) -> str:
        return "ada"

    async def perms(u: Annotated[str, Depends(user)]) -> set[str]:
        return {u}

    async def a(cfg: Annotated[dict[str, int], Depends(settings)]) -> int:
        return 1

    async def b(x: Annotated[int, Depends(a)], p: Annotated[set[str], Depends(perms)]) -> int:
        return x

    async def c() -> int:
        return 2

    app = FastAPI()

    @app.get("/")
    async def root(
        db: Annotated[Session, Depends(get_db)],
        p: Annotated[set[str], Depends(perms)],
        x: Annotated[int, Depends(b)],
        y: Annotated[int, Depends(c)],
    ) -> int:
        for _ in range(3):
            db.execute(sa.text("SELECT 1"))
        return x + y

    app.dependency_overrides[c] = lambda: 3
    return app


async def run(app: FastAPI, n: int) -> list[float]:
    transport = httpx.ASGITransport(app=app)
    timings = []
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
        for _ in range(50):  # warm-up
            await client.get("/")
        for _ in range(n):
            start = time.perf_counter()
            await client.get("/")
            timings.append(time.perf_counter() - start)
    return timings


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        app = build(Path(tmp) / "test_bench.db")
        plain = asyncio.run(run(app, n))
        session = depstrace.instrument(trace_file=Path(tmp) / "trace.jsonl")
        traced = asyncio.run(run(app, n))
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        asyncio.run(run(app, 500))
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        depstrace.uninstrument()
        nodes = len(session.requests[-1]["dependencies"])
    p, t = statistics.median(plain), statistics.median(traced)
    print(f"requests per run:        {n}")
    print(f"dependency nodes/request: {nodes}, statements/request: 3")
    print(f"median without depstrace: {p * 1e6:8.1f} us")
    print(f"median with depstrace:    {t * 1e6:8.1f} us")
    print(f"ratio traced/plain:       {t / p:8.2f}x")
    print(f"overhead per request:     {(t - p) * 1e6:8.1f} us")
    print(
        f"retained memory/request:  {(after - before) / 550 / 1024:8.2f} KiB (kept for the summary)"
    )


if __name__ == "__main__":
    main()
