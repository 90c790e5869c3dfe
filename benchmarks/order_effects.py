"""What recording order effects costs: prints microseconds, asserts nothing.

Per request, closing it computes ``order_effects`` (a few attribute reads per
database and dependency) and each dependency value is looked up among the
noted settings objects (one dict lookup, none while no settings object lives).
Per settings object, ``BaseSettings.__init__`` walks the stack once; per
engine, its URL is compared with the fields of the live settings objects once.
Nothing runs per statement or per test.  Best of several rounds, so load from
other work on the machine counts least.

    .venv/bin/python benchmarks/order_effects.py [rounds]
"""

import sys
import timeit

import sqlalchemy as sa
from pydantic_settings import BaseSettings

import depstrace
from depstrace import _order
from depstrace._context import restore_test_phase, set_test_phase
from depstrace._records import DependencyNode, NodeFacts, RequestRecord
from depstrace.sqlalchemy import registry


class Settings(BaseSettings):
    """A settings class like an app's."""

    database_url: str = "sqlite:///bench_test.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    debug: bool = False


def record(engines: list[sa.Engine], test: str) -> RequestRecord:
    """A request on ``engines`` through six dependencies, made in ``test``."""
    request = RequestRecord(
        id="r1", type="http", method="GET", path="/items", test=test, phase="call",
        app_id="app1", app_title="bench", trace_id=None,
    )  # fmt: skip
    for i in range(6):
        facts = NodeFacts(
            name=f"d{i}",
            original=f"app:d{i}",
            original_site=None,
            resolved=f"app:d{i}",
            resolved_site=None,
            overridden=False,
            kind="sync",
            callable_type="function",
            scope=None,
            use_cache=True,
        )
        node = DependencyNode(facts, i, None, "app1", False, 0.0)
        node.engine_id = registry.lookup(engines[0]).id if i == 0 else None
        request.dependencies.append(node)
    for engine in engines:
        request.note_statement(registry.lookup(engine), "SELECT")
    return request


def best(statement: str, namespace: dict[str, object], number: int, rounds: int) -> float:
    """Microseconds per execution, the best of ``rounds``."""
    return min(
        timeit.timeit(statement, globals=namespace, number=number) / number * 1e6
        for _ in range(rounds)
    )


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    depstrace.instrument(trace_file=None)
    try:
        previous = set_test_phase("tests/test_a.py::test_one", "call")
        engines = [sa.create_engine("sqlite://"), sa.create_engine("sqlite:///bench_test.db")]
        made = Settings()
        set_test_phase("tests/test_b.py::test_two", "call")
        same_test = record(engines, "tests/test_a.py::test_one")
        later_test = record(engines, "tests/test_b.py::test_two")
        namespace = {
            "order_effects": _order.order_effects,
            "birth_of": _order.birth_of,
            "note_birth": _order.note_birth,
            "same": same_test,
            "later": later_test,
            "made": made,
            "other": object(),
            "Settings": Settings,
            "BaseSettings": BaseSettings,
            "create_engine": sa.create_engine,
            "settings_holding": _order.settings_holding,
            "url": engines[1].url,
        }
        rows = [
            ("order_effects: a request of the test that made all", "order_effects(same)", 20_000),
            ("order_effects: a later test's request (2 effects)", "order_effects(later)", 20_000),
            ("birth_of: a dependency value, no settings object", "birth_of(other)", 200_000),
            ("birth_of: a noted settings object", "birth_of(made)", 200_000),
            ("settings_holding: engine URL vs 1 settings object", "settings_holding(url)", 20_000),
            (
                "note_birth: one settings object (stack walk)",
                "note_birth(made, 'settings')",
                20_000,
            ),
            ("Settings() traced (note_birth included)", "Settings()", 5_000),
        ]
        for label, statement, number in rows:
            print(f"{best(statement, namespace, number, rounds):8.2f} us  {label}")
        restore_test_phase(previous)
    finally:
        depstrace.uninstrument()
    untraced = best("Settings()", {"Settings": Settings}, 5_000, rounds)
    print(f"{untraced:8.2f} us  Settings() untraced")


if __name__ == "__main__":
    main()
