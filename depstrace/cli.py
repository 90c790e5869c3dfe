"""``depstrace``: the command line (``report`` reads trace files as one run; ``run``,
``doctor``, ``explain``)."""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
from collections.abc import Sequence

from depstrace._config import DEFAULT_TRACE_FILE
from depstrace._merge import load
from depstrace.report import EXIT_UNREADABLE, summary_lines, verdict

REPORT_EPILOG = """\
FILE may be a glob (quote it: 'shards/*.jsonl'); several files are one run (the
shards of a CI job matrix, pytest-xdist workers), and records of different files
are different processes.  Damage (an unreadable file, a last line cut
mid-write, a malformed record, a run that never finished) is reported, never
mistaken for a clean run.

exit status:
  0  clean: requests reached databases, all of them test databases, and no
     error-severity finding
  1  findings: a request reached a non-test database, or an error-severity
     finding (whatever else is wrong)
  2  usage error, unreadable file, or damaged trace (the account of what
     could be read is still printed)
  3  no data: no requests recorded, or none reached a database depstrace
     can observe
"""

DIFF_EPILOG = """\
A file whose last line was cut mid-write, or that has no summary (its run was
killed), is compared as far as it goes, and said so on stderr.

exit status:
  0  no test present in both files differs
  1  at least one test differs
  2  usage error, an unreadable file, or no test present in both files
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (``depstrace report --help`` lists them)."""
    parser = argparse.ArgumentParser(prog="depstrace", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser(
        "report",
        help="print the account of one or more JSON Lines traces as one run (exit 0 clean, "
        "1 findings, 2 unreadable or damaged, 3 no data)",
        description="Print the account of one run from its trace files.",
        epilog=REPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        default=[str(DEFAULT_TRACE_FILE)],
        help=f"trace file or glob (default: {DEFAULT_TRACE_FILE})",
    )
    report.add_argument(
        "-v", "--verbose", action="store_true", help="one paragraph per request, not per cause"
    )
    diff = commands.add_parser(
        "diff",
        help="compare two traces test by test (a test run alone and the suite): what "
        "changed and which earlier test explains it (exit 0 same, 1 differences, 2 unreadable)",
        description="Compare two trace files test by test: for each test in both, the "
        "requests whose database, engine, override, resolved callable or findings changed, "
        "and the engine, settings or override an earlier test made that explains it.",
        epilog=DIFF_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument("a", metavar="A", help="trace file (say, the test run alone)")
    diff.add_argument("b", metavar="B", help="trace file (say, the whole suite)")
    diff.add_argument("--format", choices=("text", "json"), default="text")
    run = commands.add_parser(
        "run",
        help="run COMMAND (a dev server: depstrace run -- uvicorn app.main:app) traced, "
        "without code changes",
        usage="depstrace run [--] COMMAND [ARGS ...]",
        description="Run COMMAND with DEPSTRACE=1 and depstrace loaded at interpreter start "
        "(like opentelemetry-instrument): every FastAPI request and SQL statement of every "
        "Python process it starts is traced, and the account is printed on stderr at exit.",
    )
    run.add_argument("command_line", nargs=argparse.REMAINDER, metavar="COMMAND [ARGS ...]")
    from depstrace import doctor, explain

    doctor.add_parser(commands)
    explain.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return doctor.run(args)
    if args.command == "explain":
        return explain.run(args)
    if args.command == "diff":
        return _diff(args.a, args.b, output=args.format)
    if args.command == "run":
        from depstrace.launcher import run as run_command

        return run_command(args.command_line)
    return _report(args.files, verbose=args.verbose)


def _report(patterns: Sequence[str], *, verbose: bool = False) -> int:
    """``depstrace report``: the account of ``patterns`` (files and globs) as one run."""
    paths: dict[str, None] = {}  # each file once, in the order given
    unmatched = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                unmatched.append(f"no file matches {pattern!r}")
            paths.update(dict.fromkeys(matches))
        else:
            paths[pattern] = None
    run, readable = load(list(paths))
    run.problems[:0] = unmatched
    if not readable:  # nothing to give an account of: say why, on stderr
        for problem in run.problems:
            print(f"depstrace: {problem}", file=sys.stderr)
        return EXIT_UNREADABLE
    status = verdict(run.requests, run.run_findings, damaged=bool(run.problems)).status
    where = next(iter(paths)) if len(paths) == 1 else f"{len(paths)} files"
    lines = summary_lines(
        run.requests,
        trace_file=where,
        internal_errors=run.internal_errors,
        rule=run.rule,
        run_findings=run.run_findings,
        problems=run.problems,
        verbosity=1 if verbose else 0,
        width=shutil.get_terminal_size().columns,
    )
    try:
        for line in [*lines, *run.notes]:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped (| head): stop quietly, the way the Python docs recommend
        # (https://docs.python.org/3/library/signal.html#note-on-sigpipe); the status stands.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return status


def _diff(a: str, b: str, *, output: str) -> int:
    """``depstrace diff``: compare trace files ``a`` and ``b`` test by test."""
    import json

    from depstrace.diff import diff_runs, render

    runs = []
    for path in (a, b):
        run, readable = load([path])
        if not readable:
            for problem in run.problems:
                print(f"depstrace: {problem}", file=sys.stderr)
            return EXIT_UNREADABLE
        for problem in run.problems:  # compared as far as it goes
            print(f"depstrace: note: {problem}", file=sys.stderr)
        runs.append(run)
    result = diff_runs(runs[0].requests, runs[1].requests)
    if not result.tests_compared:
        print(f"depstrace: no test has requests in both {a} and {b}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        if output == "json":
            print(json.dumps(result.to_dict() | {"a": a, "b": b}, indent=2))
        else:
            print("\n".join(render(result, a, b)))
        sys.stdout.flush()
    except BrokenPipeError:  # as in _report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 1 if result.differs else 0
