"""Run at interpreter start by ``depstrace run`` (this directory leads PYTHONPATH).

Python imports only the first ``sitecustomize`` on ``sys.path``, so this one
hides any other (a virtualenv's, a distribution's, OpenTelemetry's): run that
one first, the way ``site`` would have, then instrument.  The work lives in
:func:`depstrace.launcher.bootstrap`; nothing here may stop the program.
"""

from __future__ import annotations

import importlib
import os
import sys


def _run_hidden_sitecustomize() -> None:
    here = os.path.dirname(os.path.realpath(__file__))
    ours = sys.modules.pop("sitecustomize", None)
    # Leave this directory off sys.path for good: it holds nothing else, and the
    # hidden sitecustomize may change sys.path in ways a restore would undo.
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
    try:
        try:
            importlib.import_module("sitecustomize")
        except ImportError as exc:
            if exc.name != "sitecustomize":
                raise
            if ours is not None:
                sys.modules["sitecustomize"] = ours
    except Exception as exc:  # what site.execsitecustomize prints
        sys.stderr.write(
            "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
            f"{type(exc).__name__}: {exc}\n"
        )


def _start() -> None:
    _run_hidden_sitecustomize()
    try:
        from depstrace.launcher import bootstrap

        bootstrap()
    except Exception as exc:  # fail open: the program runs untraced
        sys.stderr.write(f"depstrace: could not start tracing: {type(exc).__name__}: {exc}\n")


_start()
