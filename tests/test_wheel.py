"""What ``pip install depstrace`` gives: built as a user gets it, installed in a fresh venv.

The wheel is built from the sdist (``uv build``), so both carry the finding
pages; the venv holds the wheel without extras plus pytest, SQLAlchemy and
httpx, at the versions of the running environment (so a CI matrix row checks
its own versions, from uv's cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from otlp_receiver import HttpReceiver

ROOT = Path(__file__).parent.parent
UV = shutil.which("uv")

pytestmark = pytest.mark.skipif(
    UV is None, reason="uv is not on PATH (bash scripts/test puts it there)"
)


def _run(*command: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def base_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel (no extras); returns its bin directory."""
    assert UV is not None
    tmp = tmp_path_factory.mktemp("wheel")
    _run(UV, "build", "--quiet", "--out-dir", tmp / "dist", ROOT)
    (wheel,) = (tmp / "dist").glob("depstrace-*.whl")
    # Pin what the running environment has, so the resolver picks the same versions.
    pins = sorted(
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in metadata.distributions()
        if dist.metadata["Name"] and dist.metadata["Name"].lower() != "depstrace"
    )
    (tmp / "constraints.txt").write_text("\n".join(pins) + "\n")
    venv = tmp / "venv"
    _run(UV, "venv", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    _run(
        UV, "pip", "install", "--quiet", "--python", python,
        "--constraints", tmp / "constraints.txt",
        wheel, "pytest", "sqlalchemy", "httpx",
    )  # fmt: skip
    return venv / "bin"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without depstrace, OpenTelemetry or Python path settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DEPSTRACE", "OTEL_", "PYTHON", "VIRTUAL_ENV"))
    }
    return env | extra


def test_the_base_install_has_the_http_exporter_and_not_grpc(base_install: Path) -> None:
    """OTLP/HTTP is a dependency; gRPC (grpcio) stays the otlp extra."""
    probe = (
        "import importlib.util as u; print("
        "u.find_spec('opentelemetry.exporter.otlp.proto.http') is not None, "
        "u.find_spec('opentelemetry.exporter.otlp.proto.grpc') is not None)"
    )
    result = _run(base_install / "python", "-c", probe, env=clean_env())
    assert result.stdout.split() == ["True", "False"]


def test_explain_reads_the_pages_shipped_in_the_wheel(base_install: Path, tmp_path: Path) -> None:
    """``depstrace explain WRONG_DB`` after a plain install prints the page, read from the
    installed package (there is no source tree next to it)."""
    result = _run(base_install / "depstrace", "explain", "WRONG_DB", cwd=tmp_path, env=clean_env())
    assert result.stdout == (ROOT / "docs" / "findings" / "WRONG_DB.md").read_text()
    where = _run(
        base_install / "python",
        "-c",
        "from depstrace.explain import pages; print(pages())",
        cwd=tmp_path,
        env=clean_env(),
    )
    assert where.stdout.strip().endswith(
        os.path.join("site-packages", "depstrace", "findings_docs")
    )


SUITE_APP = """
from typing import Annotated

from fastapi import Depends, FastAPI

app = FastAPI()


def settings() -> int:
    return 1


@app.get("/n")
def n(value: Annotated[int, Depends(settings)]) -> int:
    return value
"""

SUITE_TEST = """
from fastapi.testclient import TestClient

from app import app


def test_n():
    with TestClient(app) as client:
        assert client.get("/n").json() == 1
"""


def test_the_base_install_exports_to_a_collector_over_http(
    base_install: Path, tmp_path: Path
) -> None:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` is all a plain install needs: the test, request and
    dependency spans reach an OTLP/HTTP collector, and no install hint is printed."""
    (tmp_path / "app.py").write_text(SUITE_APP)
    (tmp_path / "test_app.py").write_text(SUITE_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    with HttpReceiver() as receiver:
        result = subprocess.run(
            [str(base_install / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-q"],
            cwd=tmp_path,
            env=clean_env(DEPSTRACE="1", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert ("depstrace[otlp]" in output, "no spans were exported" in output) == (False, False)
    assert sorted(span.name for span in receiver.spans if span.scope == "depstrace") == sorted(
        ["app:settings", "GET /n", "test_app.py::test_n"]
    )


def test_html_report_from_the_wheel(base_install: Path, tmp_path: Path) -> None:
    """``depstrace report --format html`` after a plain install writes the whole page: its
    style and script are package data shipped in the wheel."""
    trace = tmp_path / "trace.jsonl"
    trace.write_text(
        '{"type":"session","schema":1,"test_db_rule":"default"}\n'
        '{"type":"summary","schema":1,"requests":0,"wrong_db_requests":0,"engines":0,'
        '"internal_errors":0}\n'
    )
    page = tmp_path / "report.html"
    result = subprocess.run(
        [base_install / "depstrace", "report", str(trace), "--format", "html", "-o", str(page)],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (3, "")
    text = page.read_text(encoding="utf-8")
    assert ".filters {" in text
    assert 'document.body.dataset.ready = "1";' in text
