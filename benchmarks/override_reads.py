"""What tracing override writes costs FastAPI's reads: prints nanoseconds, asserts nothing.

FastAPI runs ``provider.dependency_overrides.get(call, call)`` for every
``Depends`` of every request.  While tracing, the attribute holds a ``dict``
subclass (depstrace._override_writes) and ``FastAPI.__setattr__`` is patched;
this measures that read untraced and traced, in interleaved rounds (the best
of each, so load from other work on the machine counts least).

    .venv/bin/python benchmarks/override_reads.py [rounds]
"""

import sys
import timeit

from fastapi import FastAPI

import depstrace

N = 300_000


def dependency() -> None:
    """A dependency key."""


def per_read(app: FastAPI, statement: str) -> float:
    """Nanoseconds per execution of ``statement`` on ``app``."""
    namespace = {"app": app, "f": dependency}
    return timeit.timeit(statement, globals=namespace, number=N) / N * 1e9


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    statements = {
        "app.dependency_overrides.get(f, f)": "app.dependency_overrides.get(f, f)",
        "app.dependency_overrides[f]": "app.dependency_overrides[f]",
        "app.dependency_overrides (attribute only)": "app.dependency_overrides",
    }
    best: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for traced in (False, True):
            if traced:
                depstrace.instrument(trace_file=None)
            app = FastAPI()
            app.dependency_overrides[dependency] = dependency
            for label, statement in statements.items():
                key = (label, "traced" if traced else "untraced")
                best[key] = min(best.get(key, float("inf")), per_read(app, statement))
            if traced:
                depstrace.uninstrument()
    print(f"python {sys.version.split()[0]}, best of {rounds} rounds, ns per read")
    for label in statements:
        plain, traced = best[(label, "untraced")], best[(label, "traced")]
        print(f"  {label:45} untraced {plain:6.1f}  traced {traced:6.1f}  (+{traced - plain:.1f})")


if __name__ == "__main__":
    main()
