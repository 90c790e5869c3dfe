"""``depstrace run -- COMMAND``: trace a dev server without changing its code.

It works the way ``opentelemetry-instrument`` does: the launcher sets
``DEPSTRACE=1``, puts a directory holding depstrace's ``sitecustomize.py`` first
on ``PYTHONPATH`` and replaces itself with ``COMMAND`` (``os.execve``, so the
server keeps the launcher's pid, signals and exit status).  Python runs that
``sitecustomize`` at interpreter start; it runs the one it hides, if any, then
calls :func:`bootstrap`, which instruments before the application's modules are
imported (so import-time engines get their creation site) and arranges for the
end of the process to write the ``summary`` record and print the account on
stderr: at normal exit, on Ctrl-C, and on SIGTERM when the program does not
handle SIGTERM itself (uvicorn hands it back after its graceful shutdown).

Every Python process started under the launcher is traced, workers included.
The process the launcher became writes ``DEPSTRACE_FILE``; any other one (a
``--reload`` or ``--workers`` child, a forked worker) writes
``<stem>-<pid><suffix>`` next to it, so two processes never share a file.
``depstrace run -- pytest ...`` only sets ``DEPSTRACE=1``: the pytest plugin
does the rest.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from depstrace import _config
from depstrace._failopen import report_internal_error
from depstrace._jsonl import JsonlWriter, encode_or_report

if TYPE_CHECKING:
    from depstrace._session import TraceSession

BOOTSTRAP_DIR = Path(__file__).resolve().parent / "_bootstrap"
RUN_PID_VAR = "DEPSTRACE_RUN_PID"  # pid of the process the launcher became
USAGE = "usage: depstrace run [--] COMMAND [ARGS ...]"
_SIGTERM_GRACE_SECONDS = 10.0


class LaunchError(Exception):
    """The command cannot be started; ``status`` is the exit status to return."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Launch:
    """What :func:`run` executes: the program found on PATH, its argv and env."""

    executable: str
    argv: list[str]
    env: dict[str, str]


def runs_pytest(command: Sequence[str]) -> bool:
    """Whether ``command`` is pytest (``pytest``, ``py.test``, ``python -m pytest``)."""
    name = os.path.basename(command[0])
    if name in ("pytest", "py.test"):
        return True
    args = list(command[1:3])
    return name.startswith("python") and (args == ["-m", "pytest"] or args[:1] == ["-mpytest"])


def prepare(
    command: Sequence[str],
    environ: Mapping[str, str] = os.environ,
    *,
    pid: int | None = None,
    guard: str | None = None,
) -> Launch:
    """Check the configuration and build the environment ``command`` runs in.

    ``guard`` (``--guard``) sets ``DEPSTRACE_GUARD`` for the command.  Raises
    :class:`LaunchError` (status 2) for no command or a bad setting, 127 when the
    command is not found on ``PATH``.
    """
    command = list(command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise LaunchError(f"{USAGE}\ndepstrace run: error: no command given after '--'", 2)
    env = dict(environ)
    env["DEPSTRACE"] = "1"
    if guard is not None:
        env["DEPSTRACE_GUARD"] = guard
    try:
        from depstrace._export import ExportSettings
        from depstrace._testdb import TestDatabaseRule
        from depstrace.logs import LogSettings

        TestDatabaseRule.from_env(env)
        _config.guard_mode(env)
        LogSettings.from_env(env)
        ExportSettings.from_env(env)
        trace_file = _config.trace_file(env)
    except (_config.ConfigurationError, ValueError, TypeError) as exc:
        raise LaunchError(f"depstrace run: {exc}", 2) from None
    if not runs_pytest(command):  # pytest: the plugin instruments, under the rootdir
        # Absolute, so workers that change directory still agree on the file.
        env["DEPSTRACE_FILE"] = str(trace_file.resolve())
        env["PYTHONPATH"] = _prepend(str(BOOTSTRAP_DIR), env.get("PYTHONPATH", ""))
        if os.name != "nt":  # on Windows the command is a child: it is the main process
            env[RUN_PID_VAR] = str(os.getpid() if pid is None else pid)
    executable = shutil.which(command[0], path=env.get("PATH", os.defpath))
    if executable is None:
        raise LaunchError(f"depstrace run: command not found: {command[0]}", 127)
    return Launch(executable=executable, argv=command, env=env)


def _prepend(directory: str, python_path: str) -> str:
    entries = [p for p in python_path.split(os.pathsep) if p and p != directory]
    return os.pathsep.join([directory, *entries])


def run(command: Sequence[str], *, guard: str | None = None) -> int:
    """Replace this process with ``command``, traced (and guarded when ``guard`` says
    so); return a status only on failure."""
    try:
        launch = prepare(command, guard=guard)
    except LaunchError as exc:
        print(exc, file=sys.stderr)
        return exc.status
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "nt":  # no real exec on Windows: run it and pass its status on
        return subprocess.call([launch.executable, *launch.argv[1:]], env=launch.env)
    try:
        os.execve(launch.executable, launch.argv, launch.env)
    except OSError as exc:
        print(f"depstrace run: cannot run {launch.argv[0]}: {exc.strerror}", file=sys.stderr)
        return 126
    raise AssertionError("unreachable: execve returned")  # pragma: no cover


# -- inside the launched program --------------------------------------------------------


def bootstrap(environ: Mapping[str, str] = os.environ) -> TraceSession | None:
    """Instrument this interpreter (called by depstrace's ``sitecustomize``).

    Fails open: a bad setting or an error is printed on stderr and the program
    runs untraced.  Returns the session, or None when nothing was started.
    """
    try:
        if not _config.parse_enabled(environ):
            return None
        path = _config.trace_file(environ)
        main = environ.get(RUN_PID_VAR, str(os.getpid())) == str(os.getpid())
        from depstrace._instrument import start

        if main:
            session = start(trace_file=path, runner="server")
        else:  # a worker or a helper: its own file, and only if it has something to say
            path = _per_process(path, os.getpid())
            session = start(trace_file=None, runner="server")
            session.writer = _LazyWriter(path)
            session.writer.write(session.session_record())
    except (_config.ConfigurationError, ValueError, TypeError) as exc:
        _say(f"depstrace: {exc} (the program runs without tracing)")
        return None
    except Exception:
        report_internal_error("launcher (bootstrap)")
        return None
    state = _Launched(session, path, main)
    session.listeners.append(state.flush)
    atexit.register(state.finish)
    if hasattr(os, "register_at_fork"):  # POSIX
        os.register_at_fork(before=state.before_fork, after_in_child=state.after_fork_in_child)
    _handle_sigterm(state)
    return session


def _per_process(path: Path, pid: int) -> Path:
    return path.with_name(f"{path.stem}-{pid}{path.suffix}")


def _say(line: str) -> None:
    stream = sys.stderr
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


class _LazyWriter(JsonlWriter):
    """A trace file created only once a record worth keeping arrives.

    Every Python process under the launcher is traced, including helpers that
    never serve a request (multiprocessing's resource tracker, a reloader's
    watcher, a script the app shells out to); they should leave no file.  The
    ``session``, ``engine`` and ``summary`` records alone are not worth one.
    Opening and writing fail open as in :class:`JsonlWriter`.
    """

    _TRIVIAL = frozenset({"session", "engine", "summary"})

    def __init__(self, path: Path) -> None:  # deliberately no file yet
        self.path = path
        self.error = None
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._pending: list[dict[str, Any]] | None = []

    def write(self, record: dict[str, Any]) -> None:
        """Hold trivial records until the first real one, then write them all in order."""
        line = encode_or_report(record)
        with self._lock:
            pending = self._pending
            if pending is None:
                if line is not None:
                    self._emit(line)
                return
            pending.append(record)
            if record.get("type") in self._TRIVIAL:
                return
            self._pending = None
            self._open()
            for item in pending:
                encoded = line if item is record else encode_or_report(item)
                if encoded is not None:
                    self._emit(encoded)

    def close(self) -> None:
        """Close the file if there is one; held records are dropped."""
        with self._lock:
            self._pending = None
        super().close()


class _Launched:
    """The launched process's session and how its end is reported."""

    def __init__(self, session: TraceSession, path: Path, main: bool) -> None:
        self.session = session
        self.path = path
        self.main = main
        self._lock = threading.Lock()
        self._done = False

    def flush(self, _record: dict[str, Any]) -> None:
        """After each request: push it to the file, so the trace is readable live."""
        writer = self.session.writer
        if writer is not None:
            writer.flush()

    def before_fork(self) -> None:
        """Flush before ``fork``, so the child does not write the parent's buffer again."""
        try:
            if self.session.writer is not None:
                self.session.writer.flush()
        except Exception:
            report_internal_error("launcher (fork)")

    def after_fork_in_child(self) -> None:
        """A forked worker continues in its own file with its own records."""
        try:
            self.path = _per_process(self.path.with_name(self._base_name()), os.getpid())
            self.main = False
            self._lock = threading.Lock()
            self._done = False
            self.session.requests.clear()
            self.session.run_findings.clear()
            old = self.session.writer
            writer = self.session.writer = _LazyWriter(self.path)
            if old is not None:
                old.close()  # the child's copy only; the parent's file stays open
            writer.write(self.session.session_record())
            for engine in list(self.session.engines.values()):  # seen before the fork
                writer.write(engine)
        except Exception:
            report_internal_error("launcher (fork)")

    def _base_name(self) -> str:
        """The file name of ``DEPSTRACE_FILE`` (a child of a child is not ``trace-1-2``)."""
        configured = os.environ.get("DEPSTRACE_FILE")
        return Path(configured).name if configured else self.path.name

    def finish(self) -> None:
        """End tracing: ``summary`` record, then the account on stderr."""
        with self._lock:
            if self._done:
                return
            self._done = True
        try:
            from depstrace import _failopen
            from depstrace._instrument import uninstrument
            from depstrace._session import active_session
            from depstrace.report import summary_lines

            if active_session() is not self.session:  # uninstrumented by the program
                return
            notes = self.session.finish_observers()
            uninstrument()
            if not self.main and not (self.session.requests or self.session.run_findings):
                return  # a helper process that served nothing: say nothing
            lines = summary_lines(
                self.session.requests,
                trace_file=None if self.session.trace_error else str(self.path),
                internal_errors=sum(_failopen.internal_errors.values()),
                rule=self.session.rule.describe(),
                run_findings=list(self.session.run_findings),
                warnings=list(_failopen.warnings),
                width=_width(),
            )
            for line in [*lines, *notes]:
                _say(line)
        except Exception:
            report_internal_error("launcher (exit)")


def _width() -> int | None:
    """The terminal's width when the account goes to one (or COLUMNS says it), else
    None: a server's log file keeps each line whole."""
    if "COLUMNS" in os.environ or sys.stderr.isatty():
        return shutil.get_terminal_size().columns
    return None


def _handle_sigterm(state: _Launched) -> None:
    """Report on SIGTERM too, when the program leaves SIGTERM to the default (death).

    The handler does what ``atexit`` would have done, then dies by SIGTERM as
    the program would have.  The work runs in a thread with a time limit: the
    signal may have interrupted the main thread while it held a lock the
    report needs.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        worker = threading.Thread(target=state.finish, name="depstrace-sigterm", daemon=True)
        worker.start()
        worker.join(_SIGTERM_GRACE_SECONDS)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
