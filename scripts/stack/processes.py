"""Which processes are the stack's (sessions, process groups, the stack mark), how each is signalled, and what each holds in memory."""
from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil

from scripts.stack.config import STACK_MARK, StackConfig


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({' '.join(proc.cmdline())[:160]})"
    except psutil.Error:
        return f"pid {proc.pid}"


# A process started in the background by a non-interactive shell inherits SIGINT ignored,
# and an ignored signal stays ignored across exec: the component would then not stop on
# SIGINT. Each component is exec'ed through this with SIGINT back to its default (rather
# than a preexec_fn, which is unsafe when the caller has threads, as a test runner may).
EXEC_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


def components_of(state: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    return (state or {}).get("components") or {}


def component_of(waiting: str) -> str:
    return {"metadatabase": "api-server", "dag_processor": "dag-processor", "admin password file": "api-server"}.get(
        waiting, waiting
    )


def flatten(waves: tuple[tuple[str, ...], ...]) -> list[str]:
    return [name for wave in waves for name in wave]


def session_id(proc: psutil.Process) -> int | None:
    try:
        return os.getsid(proc.pid)
    except OSError:
        return None


def in_sessions(proc: psutil.Process, leaders: set[int]) -> bool:
    """In the session of one of `leaders` (components lead theirs), or a descendant of one: the
    warm runner's steps lead sessions of their own, yet stop with the runner, not before it."""
    if session_id(proc) in leaders:
        return True
    try:
        return any(parent.pid in leaders for parent in proc.parents())
    except psutil.Error:
        return False


def process_group(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def send_signal(proc: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)


def pss_bytes(proc: psutil.Process) -> int:
    try:
        return proc.memory_full_info().pss
    except (psutil.Error, AttributeError):
        return 0


def relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def tracked(state: Mapping[str, Any] | None) -> dict[str, psutil.Process]:
    """Components of the state file that still run (the same process: PID and start time)."""
    running = {}
    for name, entry in components_of(state).items():
        try:
            proc = psutil.Process(entry["pid"])
            if abs(proc.create_time() - entry["create_time"]) < 1.0 and alive(proc):
                running[name] = proc
        except psutil.Error:
            continue
    return running


def children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def stack_processes(config: StackConfig, state: Mapping[str, Any] | None) -> dict[int, psutil.Process]:
    """Every live process of the stack of `config` (Stack.processes says which); `state` names the components and
    so their sessions."""
    recorded = {entry["pid"]: entry["create_time"] for entry in components_of(state).values()}
    live = {proc.pid for proc in tracked(state).values()}
    homes = (config.airflow_home, config.mlflow_home)
    mark = str(config.airflow_home)
    me = psutil.Process()
    exclude = {me.pid, *(p.pid for p in me.parents())}
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        if proc.pid in exclude:
            continue
        try:
            sid = os.getsid(proc.pid)
            # In the session of a running component (verified by its start time), or marked.
            if sid in live or proc.environ().get(STACK_MARK) == mark:
                ours = True
            else:
                # The component died and left its children: they are in its session, were
                # started after it and still run in a home of this stack. (A bare session
                # id could be a recycled PID and some unrelated program.)
                ours = (
                    sid in recorded
                    and proc.create_time() >= recorded[sid] - 1.0
                    and any(Path(proc.cwd()).is_relative_to(home) for home in homes)
                )
            if ours and alive(proc):
                found[proc.pid] = proc
        except (psutil.Error, OSError):  # gone, or another user's
            continue
    for proc in tracked(state).values():
        for child in children(proc):
            if child.pid not in exclude and alive(child):
                found.setdefault(child.pid, child)
    return found


def orphans(procs: Mapping[int, psutil.Process], state: Mapping[str, Any] | None) -> list[psutil.Process]:
    """Processes whose component died: re-parented to init, or in a dead component's session."""
    live = {proc.pid for proc in tracked(state).values()}
    dead = {entry["pid"] for entry in components_of(state).values()} - live
    found = []
    for proc in procs.values():
        try:
            if proc.pid not in live and (proc.ppid() == 1 or os.getsid(proc.pid) in dead):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found
