"""``depstrace``: the command line (``report`` reads trace files as one run; ``run``,
``doctor``, ``explain``)."""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from depstrace._config import DEFAULT_TRACE_FILE
from depstrace._merge import load
from depstrace._select import Selection
from depstrace.formats import json_document, markdown_lines
from depstrace.gate import gate_lines, gated, parse_codes
from depstrace.html_report import HtmlReport
from depstrace.report import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_UNREADABLE,
    headline,
    summary_lines,
    verdict,
)

REPORT_EPILOG = """\
FILE may be a glob (quote it: 'shards/*.jsonl'); several files are one run (the
shards of a CI job matrix, pytest-xdist workers), and records of different files
are different processes.  Damage (an unreadable file, a last line cut
mid-write, a malformed record, a run that never finished) is reported, never
mistaken for a clean run.

--test, --code and --db keep only the requests and findings that match (each
may repeat); the verdict and exit status are those of what they keep.  The
records are read one at a time: memory stays flat however long the trace.

exit status:
  0  clean: requests reached databases, all of them test databases, and no
     error-severity finding
  1  findings: a request reached a non-test database, or an error-severity
     finding (whatever else is wrong)
  2  usage error, unreadable file, or damaged trace (the account of what
     could be read is still printed)
  3  no data: no requests recorded, or none reached a database depstrace
     can observe
with --fail-on CODES: 1 when one of CODES was found, else 2 for a damaged
trace, else 0.
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
    report.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (the account, default), markdown (for a CI job summary such as "
        "$GITHUB_STEP_SUMMARY), json, or html (one self-contained page)",
    )
    report.add_argument("-o", "--output", metavar="PATH", help="write to PATH, not stdout")
    report.add_argument(
        "--fail-on",
        metavar="CODES",
        help="exit 1 when any of these comma-separated finding codes occurs (WRONG_DB,"
        "DI_BYPASS), naming the tests; other findings do not fail",
    )
    report.add_argument(
        "--test",
        action="append",
        default=[],
        metavar="NODEID",
        help="keep the tests of this node id, file or directory (or fnmatch glob)",
    )
    report.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="CODES",
        help="keep requests and findings with one of these finding codes",
    )
    report.add_argument(
        "--db",
        action="append",
        default=[],
        metavar="PATTERN",
        help="keep requests on a matching database: an engine id (e3), or a pattern as in "
        "DEPSTRACE_TEST_DB (a glob over the redacted URL or database name, or re:REGEX)",
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
        usage="depstrace run [--guard MODE] [--] COMMAND [ARGS ...]",
        description="Run COMMAND with DEPSTRACE=1 and depstrace loaded at interpreter start "
        "(like opentelemetry-instrument): every FastAPI request and SQL statement of every "
        "Python process it starts is traced, and the account is printed on stderr at exit.",
    )
    run.add_argument(
        "--guard",
        choices=("off", "writes", "all"),
        default=None,
        help="refuse writes (writes) or every statement (all) on databases that are not "
        "test databases (sets DEPSTRACE_GUARD; docs/guard.md)",
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

        return run_command(args.command_line, guard=args.guard)
    try:
        options = _Options.parse(args)
    except ValueError as exc:
        print(f"depstrace report: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    return _report(args.files, options)


FORMATS = ("text", "markdown", "json", "html")


@dataclass(frozen=True)
class _Options:
    """What ``depstrace report`` was asked for, checked."""

    verbose: bool = False
    format: str = "text"
    output: str | None = None
    fail_on: tuple[str, ...] = ()
    select: Selection | None = None

    @classmethod
    def parse(cls, args: argparse.Namespace) -> _Options:
        """Raise ValueError (a usage error) for an unknown code or a bad --db pattern."""
        fail_on = parse_codes(args.fail_on, source="--fail-on") if args.fail_on else ()
        codes = [c for value in args.code for c in parse_codes(value, source="--code")]
        select = Selection.build(args.test, codes, args.db)
        return cls(args.verbose, args.format, args.output, fail_on, select)


def _report(patterns: Sequence[str], options: _Options | None = None) -> int:
    """``depstrace report``: the account of ``patterns`` (files and globs) as one run."""
    options = options or _Options()
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
    try:
        out = open(options.output, "w", encoding="utf-8") if options.output else sys.stdout  # noqa: SIM115
    except OSError as exc:
        print(f"depstrace report: cannot write {options.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_UNREADABLE
    status = [EXIT_UNREADABLE]  # what to return if the reader stops before the verdict
    try:
        _render(list(paths), unmatched, options, out, status)
    except BrokenPipeError:
        # The reader stopped (| head): stop quietly, the way the Python docs recommend
        # (https://docs.python.org/3/library/signal.html#note-on-sigpipe); the status stands.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        if out is not sys.stdout:
            out.close()
    return status[0]


def _render(
    paths: list[str], unmatched: list[str], options: _Options, out: TextIO, status: list[int]
) -> None:
    """Read ``paths`` once, streaming, and write the run in ``options.format`` to ``out``;
    ``status[0]`` is the exit status as soon as it is known."""
    page = HtmlReport(out) if options.format == "html" else None
    run, readable = load(
        paths, select=options.select, tap=page.add if page is not None else None, slim=True
    )
    run.problems[:0] = unmatched
    if not readable:  # nothing to give an account of: say why, on stderr
        for problem in run.problems:
            print(f"depstrace: {problem}", file=sys.stderr)
        if page is not None:  # a whole page that says so, not half of one
            page.finish(headline="depstrace: no trace file could be read.", account=[],
                        run_findings=[], problems=run.problems, status=EXIT_UNREADABLE)  # fmt: skip
        return
    judged = verdict(run.requests, run.run_findings, damaged=bool(run.problems))
    status[0] = judged.status
    gate: list[str] = []
    if options.fail_on:
        found = gated(run.requests, run.run_findings, options.fail_on)
        gate = gate_lines(found, options.fail_on, option="--fail-on")
        status[0] = EXIT_FINDINGS if found else EXIT_UNREADABLE if judged.damaged else EXIT_CLEAN
    where = paths[0] if len(paths) == 1 else f"{len(paths)} files"
    said = headline(judged, where)
    if options.format == "text" or page is not None:
        lines = summary_lines(
            run.requests,
            trace_file=where,
            internal_errors=run.internal_errors,
            rule=run.rule,
            run_findings=run.run_findings,
            problems=run.problems,
            verbosity=1 if options.verbose else 0,
            width=shutil.get_terminal_size().columns
            if out is sys.stdout and page is None
            else None,
        )
    if page is not None:
        page.finish(
            headline=said,
            account=lines,
            run_findings=run.run_findings,
            problems=run.problems,
            gate=gate,
            trace=where,
            tests=judged.tests,
            status=status[0],
        )
    elif options.format == "markdown":
        text = markdown_lines(
            said, run.requests, run.run_findings, problems=run.problems, gate=gate, guard=run.guard
        )
        out.write("\n".join(text) + "\n")
    elif options.format == "json":
        document = json_document(
            judged,
            said,
            run.requests,
            run.run_findings,
            status=status[0],
            problems=run.problems,
            rule=run.rule,
            internal_errors=run.internal_errors,
            fail_on=options.fail_on,
            guard=run.guard,
        )
        # Written as it is encoded: the whole text of a large run would not fit in flat memory.
        json.dump(document, out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        out.write("\n".join([*lines, *gate, *run.notes]) + "\n")
    out.flush()


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
