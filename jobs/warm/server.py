"""The warm runner's server: preload, listen on the socket, fork a relay per connection, stream each step."""
from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any
from jobs.warm.client import kill_step, serving
from jobs.warm.protocol import StepRequest, receive, send
from jobs.warm.step_process import become_step
from jobs.warm.steps import PRELOAD, check_step, preload

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REQUEST_TIMEOUT_S = 30.0  # a connection that sends no request in time is dropped
STOP_GRACE_S = 10.0  # how long a stopping server waits for its relays (and their steps)
_SOCKET_PATH_MAX = 107  # sun_path on Linux, less the terminating NUL

log = logging.getLogger("jobs.warm")


def _os_threads() -> list[str]:
    """Names of this process's OS threads (Linux), for the fork-safety line of the log."""
    try:
        tasks = sorted(os.listdir("/proc/self/task"))
        return [Path(f"/proc/self/task/{task}/comm").read_text().strip() for task in tasks]
    except OSError:
        return []



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
        message = receive(conn)
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
            send(conn, {"error": str(exc)})
        os._exit(0)

    output_r, output_w = os.pipe()
    ready_r, ready_w = os.pipe()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    pid = os.fork()
    if pid == 0:
        os.close(output_r)
        os.close(ready_r)
        become_step(request, conn, output_w, ready_w, blocked)
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
            send(conn, {"exit": code})
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
        send(conn, message)
    except OSError:
        return False
    return True

