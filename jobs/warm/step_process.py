"""The step process: a fork of the server becomes `python -m jobs.<step>` and ends as an interpreter would."""
from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import logging
import os
import runpy
import signal
import sys
import threading
from multiprocessing.connection import Connection
from jobs.warm.protocol import StepRequest

log = logging.getLogger("jobs.warm")


def become_step(request: StepRequest, conn: Connection, output_fd: int, ready_fd: int,
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


def log_extra_imports(request: StepRequest, preloaded: set[str], seconds: float) -> None:
    """One line in the server's log: the step's time and the packages it imported beyond the preload."""
    extra = sorted({n.split(".")[0] for n in set(sys.modules) - preloaded if n.split(".")[0] not in ("jobs", "__main__")})
    log.info("%s ran in %.1f s%s", request.command_line(), seconds,
             f"; imported beyond the preload: {', '.join(extra[:20])}" if extra else "")

