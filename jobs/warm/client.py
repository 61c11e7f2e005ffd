"""The warm runner's client: run a step on a server (run_step), kill its process group, probe a socket."""
from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Client
from jobs.warm.protocol import StepRequest, WarmRunnerError, WarmRunnerUnavailable, receive, send


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
            send(conn, request.to_message())
            first = receive(conn)
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
                message = receive(conn)
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

