"""instrument() / uninstrument(): idempotent, and everything put back exactly."""

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import fastapi
import fastapi.dependencies.utils
import fastapi.routing
import pytest
import sqlalchemy as sa
import sqlalchemy.engine.create
import sqlalchemy.ext.asyncio.engine
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

import depstrace
from depstrace import testing


def originals() -> dict[str, object]:
    """Every object depstrace patches, as it is now."""
    return {
        "utils.solve_dependencies": fastapi.dependencies.utils.solve_dependencies,
        "routing.solve_dependencies": fastapi.routing.solve_dependencies,
        "FastAPI.__call__": FastAPI.__call__,
        "FastAPI.__setattr__": FastAPI.__setattr__,
        "FastAPI.__delattr__": FastAPI.__delattr__,
        "sqlalchemy.create_engine": sa.create_engine,
        "create.create_engine": sqlalchemy.engine.create.create_engine,
        "asyncio._create_engine": sqlalchemy.ext.asyncio.engine._create_engine,
    }


def listening() -> bool:
    """Whether depstrace's statement listener is registered on the Engine class."""
    from depstrace.sqlalchemy import _before_cursor_execute

    return sa.event.contains(sa.engine.Engine, "before_cursor_execute", _before_cursor_execute)


def test_uninstrument_restores_every_original(tmp_path: Path) -> None:
    """After uninstrument every patched name is the original object again (is)."""
    before = originals()
    assert not listening()
    depstrace.instrument(trace_file=tmp_path / "t.jsonl")
    during = originals()
    assert all(during[name] is not before[name] for name in before)
    assert listening()
    depstrace.uninstrument()
    after = originals()
    assert all(after[name] is before[name] for name in before)
    assert not listening()
    assert "_depstrace" not in repr(vars(FastAPI))


def test_instrument_is_idempotent(tmp_path: Path) -> None:
    """A second instrument() returns the running session and patches nothing twice."""
    first = depstrace.instrument(trace_file=tmp_path / "t.jsonl")
    call = FastAPI.__call__
    assert depstrace.instrument() is first
    assert FastAPI.__call__ is call
    assert listening()
    assert depstrace.uninstrument() is first
    assert depstrace.uninstrument() is None


def test_nothing_is_recorded_after_uninstrument(tmp_path: Path) -> None:
    """Requests after uninstrument produce no records and no file lines."""
    app = FastAPI()

    @app.get("/")
    def root(x: Annotated[int, Depends(lambda: 1)]) -> int:
        return x

    session = depstrace.instrument(trace_file=tmp_path / "t.jsonl")
    depstrace.uninstrument()
    size = (tmp_path / "t.jsonl").stat().st_size
    with TestClient(app) as client:
        assert client.get("/").json() == 1
    assert session.requests == []
    assert (tmp_path / "t.jsonl").stat().st_size == size


def test_app_created_before_instrumentation_is_traced(tmp_path: Path) -> None:
    """An app (and its routes) built before instrument() is traced afterwards."""
    app = FastAPI()

    @app.get("/")
    def root(x: Annotated[int, Depends(lambda: 1)]) -> int:
        return x

    with TestClient(app) as client:
        client.get("/")  # builds the middleware stack before instrumentation
        with testing.capture() as records:
            assert client.get("/").json() == 1
    assert [r["path"] for r in records] == ["/"]
    assert len(records[0]["dependencies"]) == 1
    assert not depstrace.is_instrumented()


def test_capture_nested_in_a_traced_run_only_listens(tmp_path: Path) -> None:
    """testing.capture inside an instrumented run neither re-instruments nor uninstruments."""
    app = FastAPI()
    app.get("/")(lambda: 1)
    depstrace.instrument(trace_file=None)
    with testing.capture() as records, TestClient(app) as client:
        client.get("/")
    assert depstrace.is_instrumented()
    assert len(records) == 1


def test_lifespan_and_other_scopes_pass_through(tmp_path: Path) -> None:
    """Lifespan events run untouched and produce no request record."""
    started = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started.append(True)
        yield

    app = FastAPI(lifespan=lifespan)
    with testing.capture() as records, TestClient(app):
        pass
    assert started == [True]
    assert records == []


def test_bad_test_db_spec_is_a_clear_error(tmp_path: Path) -> None:
    """instrument(test_db=...) with an unsupported type raises and patches nothing."""
    before = originals()
    with pytest.raises(TypeError, match="int"):
        depstrace.instrument(trace_file=None, test_db=42)
    assert originals() == before
    assert not depstrace.is_instrumented()


def test_disabled_plugin_patches_nothing() -> None:
    """In this (DEPSTRACE-less) test session the plugin installed no patch."""
    assert fastapi.dependencies.utils.solve_dependencies.__module__ == "fastapi.dependencies.utils"
    assert FastAPI.__call__.__module__ == "fastapi.applications"
    assert "__setattr__" not in vars(FastAPI)
    assert sa.create_engine.__module__.startswith("sqlalchemy")
    assert "depstrace.pytest_plugin" in sys.modules
