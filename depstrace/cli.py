"""``depstrace``: the command line (``report`` reads a trace file; ``run``, ``doctor``,
``explain``)."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence

from depstrace._config import DEFAULT_TRACE_FILE
from depstrace._jsonl import read_records
from depstrace.report import offending, summary_lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 clean, 1 offenders found, 2 usage)."""
    parser = argparse.ArgumentParser(prog="depstrace", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser(
        "report",
        help="print the account of a JSON Lines trace (exit 1 if any request "
        "reached a non-test database)",
    )
    report.add_argument("file", nargs="?", default=str(DEFAULT_TRACE_FILE))
    report.add_argument(
        "-v", "--verbose", action="store_true", help="one paragraph per request, not per cause"
    )
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
    if args.command == "run":
        from depstrace.launcher import run as run_command

        return run_command(args.command_line)
    try:
        records = list(read_records(args.file))
    except OSError as exc:
        print(f"depstrace: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"depstrace: {exc}", file=sys.stderr)
        return 2
    requests = [r for r in records if r["type"] == "request"]
    session = next((r for r in records if r["type"] == "session"), {})
    run_findings = [r for r in records if r["type"] == "finding"]
    for line in summary_lines(
        requests,
        trace_file=args.file,
        rule=session.get("test_db_rule"),
        run_findings=run_findings,
        verbosity=1 if args.verbose else 0,
        width=shutil.get_terminal_size().columns,
    ):
        print(line)
    return 1 if offending(requests) else 0
