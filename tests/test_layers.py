"""The package's layers, and that every import points down them (docs/architecture.md).

Each module of ``depstrace`` belongs to one layer; a module may import modules of
its own layer or of a lower one, never a higher one, and the import graph has no
cycle, counting imports inside functions (an import done late is still a
dependency), but not those under ``if TYPE_CHECKING:`` (annotations only).
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "depstrace"

# Lowest first.  A new module goes in the lowest layer its imports allow.
LAYERS: dict[str, set[str]] = {
    # Pure helpers: names, words, redaction, configuration, the test-database rule.
    "core": {
        "_attributes", "_callables", "_config", "_envorigin", "_failopen", "_lookalike",
        "_names", "_patching", "_redact", "_spanjson", "_sql", "_testdb", "_validate",
        "_version", "_words",
    },
    # What was recorded: the running request and test, records, the trace file.
    "record": {
        "_context", "_jsonl", "_observers", "_order", "_origin", "_override_writes",
        "_records", "_requestlog", "_sites",
    },
    # Findings from records (no probe, no output).
    "diagnosis": {"findings"},
    # What watches the application: FastAPI's solver, SQLAlchemy, the other stores,
    # outbound calls, the guard, the override ledger and the route walk.
    "probes": {
        "calls", "calls._aws", "calls._fakes", "calls._http", "calls._redis", "fastapi",
        "guard", "_overrides", "routes", "sqlalchemy", "stores", "stores.mongo",
        "stores.pgdrivers",
    },
    # One trace session: opens a record per request (the middleware), judges and
    # writes it when it closes.
    "session": {"_session", "middleware"},
    # What is made of results: the account, reports, spans, logs, gates, diffs.
    "outputs": {
        "_export", "_merge", "_select", "account", "assertions", "diff",
        "explain", "formats", "gate", "html_report", "logs", "report", "spans",
    },
    # Entry points: the public API, the pytest plugin, the launcher, the CLI, the doctor.
    "entry": {
        "", "__main__", "_bootstrap.sitecustomize", "_instrument", "cli",
        "doctor", "launcher", "pytest_plugin", "testing",
    },
}  # fmt: skip
RANK = {module: rank for rank, members in enumerate(LAYERS.values()) for module in members}
LAYER_OF = {module: name for name, members in LAYERS.items() for module in members}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The depstrace modules ``path`` imports (``""`` is the package itself)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module == "depstrace" or child.module.startswith("depstrace."):
                    base = child.module.removeprefix("depstrace").removeprefix(".")
                    for alias in child.names:
                        sub = f"{base}.{alias.name}".lstrip(".")
                        found.add(sub if sub in modules else base)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == "depstrace" or alias.name.startswith("depstrace."):
                        found.add(alias.name.removeprefix("depstrace").removeprefix("."))
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        # A package's submodule imports its package's __init__ anyway: not an edge.
        graph[name] = {
            target
            for target in _imports(path, modules)
            if target != name and not name.startswith(f"{target}.")
        }
    return graph


def test_every_module_has_a_layer() -> None:
    """A module no layer lists (new, or renamed) fails here with its name."""
    graph = _graph()
    assert sorted(set(graph) - set(RANK)) == []
    assert sorted(set(RANK) - set(graph)) == []


def test_imports_point_down_the_layers() -> None:
    """No module imports one of a higher layer; each violation is named."""
    upward = [
        f"{module} ({LAYER_OF[module]}) imports {target} ({LAYER_OF[target]})"
        for module, targets in sorted(_graph().items())
        for target in sorted(targets)
        if RANK[target] > RANK[module]
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    """Not even between modules of one layer, nor through an import inside a function."""
    try:
        tuple(TopologicalSorter(_graph()).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
