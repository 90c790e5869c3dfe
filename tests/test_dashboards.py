"""dashboards/: the compose file, Grafana provisioning, the dashboard and the README searches.

Docker does not run here, so the files are checked statically (valid YAML and
JSON, ports, every provisioned path mounted and present), and every attribute
the dashboard and the README query is checked twice: it is a name in
``depstrace._attributes``, and a real traced pytest run exporting OTLP to a
real receiver emits it.  The searches themselves are run against those spans
with Jaeger's matching rules, so a search the README promises really finds the
request it promises.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from depstrace import _attributes, findings, logs

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
COMPOSE = DASHBOARDS / "docker-compose.yml"
DATASOURCES = DASHBOARDS / "grafana" / "provisioning" / "datasources" / "jaeger.yml"
PROVIDERS = DASHBOARDS / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD = DASHBOARDS / "grafana" / "dashboards" / "depstrace.json"
README = DASHBOARDS / "README.md"

ATTRIBUTE_NAMES = {
    value for name, value in vars(_attributes).items() if name.isupper() and isinstance(value, str)
}
LOG_EVENTS = {logs.REQUEST_EVENT, logs.DEPENDENCY_EVENT, logs.FINDING_EVENT}
# A dotted lower-case name under one of the attribute namespaces, not inside a path.
NAME = re.compile(
    r"(?<![\w./@:-])((?:depstrace|db|http|server|code|url|error)(?:\.[a-z][a-z0-9_]*)+)(?![\w-])"
)
NOT_NAMES = (".json", ".yml", ".yaml", ".md", ".py", ".jsonl")


def load_yaml(path: Path) -> Any:
    """A YAML file, parsed strictly."""
    return yaml.safe_load(path.read_text())


def strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def names_in(texts: Iterator[str] | list[str]) -> set[str]:
    """The attribute-like names the texts mention."""
    return {
        match for text in texts for match in NAME.findall(text) if not match.endswith(NOT_NAMES)
    }


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON."""
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def all_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Panels, including those inside rows."""
    panels = []
    for panel in board["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """A compose service's bind mounts: container path -> host path."""
    result = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        result[container] = (COMPOSE.parent / host).resolve()
    return result


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """Where a path inside the container comes from on the host (it must be mounted)."""
    target = PurePosixPath(container_path)
    for container, host in mounts(service).items():
        if target == PurePosixPath(container) or PurePosixPath(container) in target.parents:
            return host.joinpath(*target.relative_to(container).parts)
    raise AssertionError(f"{container_path} is not mounted into the container")


# -- the files, statically ----------------------------------------------------------------


def test_compose_runs_jaeger_with_otlp_and_grafana() -> None:
    """Jaeger all-in-one receives OTLP on 4317/4318 and serves its UI on 16686, Grafana on
    3000, all bound to the loopback interface only."""
    compose = load_yaml(COMPOSE)
    jaeger, grafana = compose["services"]["jaeger"], compose["services"]["grafana"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert grafana["image"].startswith("grafana/grafana:")
    published = {
        name: sorted(port.split(":") for port in service["ports"])
        for name, service in compose["services"].items()
    }
    assert published == {
        "jaeger": [
            ["127.0.0.1", "16686", "16686"],
            ["127.0.0.1", "4317", "4317"],
            ["127.0.0.1", "4318", "4318"],
        ],
        "grafana": [["127.0.0.1", "3000", "3000"]],
    }
    assert grafana["depends_on"] == ["jaeger"]


def test_grafana_mounts_provisioning_and_dashboards_that_exist() -> None:
    """Every bind mount of Grafana points at a directory in dashboards/, provisioning lands
    where Grafana reads it, and the home dashboard is a mounted file."""
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    assert all(path.is_dir() for path in mounts(grafana).values())
    assert host_path(grafana, "/etc/grafana/provisioning/datasources/jaeger.yml") == DATASOURCES
    assert host_path(grafana, "/etc/grafana/provisioning/dashboards/dashboards.yml") == PROVIDERS
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home) == DASHBOARD


def test_datasource_is_the_composed_jaeger() -> None:
    """The provisioned data source is the compose file's Jaeger query service, by uid."""
    config = load_yaml(DATASOURCES)
    (source,) = config["datasources"]
    assert (config["apiVersion"], source["type"], source["uid"], source["url"]) == (
        1,
        "jaeger",
        "jaeger",
        "http://jaeger:16686",
    )


def test_dashboard_provider_reads_the_mounted_dashboard_directory() -> None:
    """The file provider's path is the mounted dashboards directory holding depstrace.json."""
    config = load_yaml(PROVIDERS)
    (provider,) = config["providers"]
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    assert provider["type"] == "file"
    assert host_path(grafana, provider["options"]["path"]) == DASHBOARD.parent
    assert sorted(p.name for p in DASHBOARD.parent.iterdir()) == ["depstrace.json"]


def test_dashboard_queries_the_provisioned_jaeger_with_defined_variables() -> None:
    """Every query is a Jaeger search on the provisioned data source, every ``$variable``
    it uses is defined, and panel ids are unique."""
    board = dashboard()
    uid = load_yaml(DATASOURCES)["datasources"][0]["uid"]
    variables = {v["name"] for v in board["templating"]["list"]}
    panels = all_panels(board)
    assert len({p["id"] for p in panels}) == len(panels)
    queried = [p for p in panels if p["type"] == "table"]
    assert len(queried) == 3
    for panel in queried:
        (target,) = panel["targets"]
        assert panel["datasource"] == target["datasource"] == {"type": "jaeger", "uid": uid}
        assert target["queryType"] == "search"
        used = set(re.findall(r"\$(\w+)", json.dumps(panel)))
        assert used <= variables, panel["title"]
    assert {p.get("repeat") for p in queried} == {None, "code"}


def test_the_code_variable_lists_every_finding_code() -> None:
    """The finding-code variable offers every code depstrace defines, each documented."""
    (code,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "code"]
    offered = code["query"].split(",")
    defined = {value for name, value in vars(findings).items() if name.isupper() and value == name}
    fmt = (ROOT / "docs" / "format.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z_]+)`", fmt.split("## Finding codes", 1)[1]))
    assert defined <= set(offered)
    assert set(offered) <= documented
    assert [o["value"] for o in code["options"]] == ["$__all", *offered]


def test_every_queried_name_is_an_attribute_depstrace_defines() -> None:
    """Each attribute name in the dashboard and the README is one of depstrace._attributes
    (or a log event of depstrace.logs)."""
    used = names_in(list(strings(dashboard()))) | names_in([README.read_text()])
    assert used, "no attribute names found: the pattern is broken"
    assert used - ATTRIBUTE_NAMES - LOG_EVENTS == set()
    assert {"depstrace.wrong_db", "depstrace.finding.code", "depstrace.db.is_test"} <= used


# -- against real spans ---------------------------------------------------------------------

SUITE_APP = """\
import os
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI

DATA = os.environ["SUITE_DATA"]
prod_engine = sa.create_engine(f"sqlite:///{DATA}/shop.db")


def get_conn():
    with prod_engine.connect() as conn:
        yield conn


app = FastAPI(title="shop")


@app.get("/items/{item_id}")
def item(item_id: int, conn: Annotated[sa.Connection, Depends(get_conn)]) -> int:
    return conn.execute(sa.text("SELECT :i"), {"i": item_id}).scalar_one()


@app.get("/report")
def report() -> int:
    with prod_engine.connect() as conn:  # opened outside Depends
        return conn.execute(sa.text("SELECT 1")).scalar_one()
"""

SUITE_TESTS = """\
import os

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import app, get_conn, prod_engine

with prod_engine.connect() as conn:  # at collection, outside any test: a run finding
    conn.execute(sa.text("SELECT 1"))

test_engine = sa.create_engine(f"sqlite:///{os.environ['SUITE_DATA']}/shop_test.db")


def override_conn():
    with test_engine.connect() as conn:
        yield conn


@pytest.fixture
def client():
    app.dependency_overrides[get_conn] = override_conn
    with TestClient(app) as client:
        yield client
    app.dependency_overrides.clear()


def test_item(client):
    assert client.get("/items/3").json() == 3


def test_report(client):
    assert client.get("/report").json() == 1
"""


@pytest.fixture(scope="module")
def exported(make_prod_dir: Callable[[], Path]) -> list[Any]:
    """The spans a small traced suite exports, run exactly as the README says (in a
    directory outside pytest's temporary ones, where shop.db would be a test database)."""
    from otlp_receiver import HttpReceiver

    suite = make_prod_dir()
    (suite / "app.py").write_text(SUITE_APP)
    (suite / "test_shop.py").write_text(SUITE_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPSTRACE", "OTEL_"))}
    with HttpReceiver() as receiver:
        env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "DEPSTRACE_EXPORTER": "otlp",
            "DEPSTRACE": "1",
            "SUITE_DATA": str(suite),
            "PYTHONPATH": str(suite),
        }
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_shop.py"],
            check=False,
            cwd=suite,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        spans = receiver.spans
    assert spans, result.stdout
    return spans


def jaeger_value(value: Any) -> str:
    """A span attribute as Jaeger stores and compares it (arrays become JSON text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def jaeger_search(
    spans: list[Any], tags: str, *, service: str = "depstrace", operation: str = ""
) -> list[Any]:
    """The spans Jaeger's search would match: service, operation and every ``key=value`` tag
    on one span, tags compared with the span's attributes and its events' fields."""
    wanted = dict(pair.split("=", 1) for pair in tags.split())
    found = []
    for span in spans:
        if span.service != service or (operation and span.name != operation):
            continue
        fields = {(k, jaeger_value(v)) for k, v in span.attributes.items()}
        for name, attributes in span.events:
            fields.add(("event", name))
            fields |= {(k, jaeger_value(v)) for k, v in attributes.items()}
        if all((k, v) in fields for k, v in wanted.items()):
            found.append(span)
    return found


def emitted_names(spans: list[Any]) -> set[str]:
    """Every span name, attribute key, event name and event field name the spans carry."""
    names = set()
    for span in spans:
        names.add(span.name)
        names |= set(span.attributes)
        for name, attributes in span.events:
            names.add(name)
            names |= set(attributes)
    return names


def test_every_queried_name_is_really_emitted(exported: list[Any]) -> None:
    """Each attribute the dashboard and README query arrives at a real OTLP receiver."""
    used = names_in(list(strings(dashboard()))) | names_in([README.read_text()])
    assert used - LOG_EVENTS - emitted_names(exported) == set()


def test_the_readme_searches_find_the_offending_request(exported: list[Any]) -> None:
    """The README's searches, run with Jaeger's rules, find the request that reached the
    production database (and only the search the README warns about finds nothing)."""
    report = "test_shop.py::test_report"
    item = "test_shop.py::test_item"

    def hits(tags: str, **kwargs: str) -> list[tuple[str, Any]]:
        return sorted(
            (s.name, s.attributes.get(_attributes.TEST_ID))
            for s in jaeger_search(exported, tags, **kwargs)
        )

    assert hits("depstrace.wrong_db=true") == [("GET /report", report)]
    assert hits("depstrace.finding.code=WRONG_DB") == [("GET /report", report)]
    assert hits("depstrace.finding.code=DI_BYPASS") == [("GET /report", report)]
    assert hits("depstrace.db.is_test=false") == [("shop.db", None)]
    assert hits(f"depstrace.test={item} depstrace.wrong_db=false") == [
        ("GET /items/{item_id}", item)
    ]
    assert hits("depstrace.dependency.overridden=true") == [("test_shop:override_conn", None)]
    assert hits("depstrace.wrong_db=true", operation="GET /items/{item_id}") == []
    assert hits("http.route=/report depstrace.finding.code=WRONG_DB") == [("GET /report", report)]
    assert hits("depstrace.finding.code=DB_OUTSIDE_REQUEST") == [("depstrace.run", None)]
    # The span attribute is a list (Jaeger stores its JSON text), but every finding event
    # carries the single code under the same name, so the search of the issue works.
    assert hits("depstrace.findings=WRONG_DB") == [("GET /report", report)]
    assert hits("depstrace.findings=DB_OUTSIDE_REQUEST") == [("depstrace.run", None)]
    assert [s.name for s in jaeger_search(exported, "depstrace.test.outcome=passed")] == [
        item,
        report,
    ]


def test_the_dashboard_panels_find_the_offending_request(exported: list[Any]) -> None:
    """Each table of the dashboard, with its variables at their defaults, finds what its
    title says in the real spans."""
    board = dashboard()
    defaults = {
        v["name"]: v["query"] for v in board["templating"]["list"] if v["type"] == "textbox"
    }

    def run(panel: dict[str, Any], **variables: str) -> list[str]:
        (target,) = panel["targets"]
        values = defaults | variables

        def expand(text: str) -> str:
            return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], text)

        spans = jaeger_search(
            exported,
            expand(target["tags"]),
            service=expand(target["service"]),
            operation=expand(target["operation"]),
        )
        return sorted(s.name for s in spans)

    tables = {p["id"]: p for p in all_panels(board) if p["type"] == "table"}
    assert run(tables[2]) == ["GET /report"]
    assert run(tables[3]) == ["shop.db"]
    assert run(tables[5], code="WRONG_DB") == ["GET /report"]
    assert run(tables[5], code="DI_BYPASS") == ["GET /report"]
    assert run(tables[5], code="OVERRIDE_LEAKED") == []
    assert run(tables[2], route="GET /items/{item_id}") == []
    assert run(tables[2], tags="depstrace.test=test_shop.py::test_report") == ["GET /report"]
    assert run(tables[3], db_tags="db.namespace=shop.db") == ["shop.db"]
