"""Killing a step with SIGKILL, and checking what it left in the lake (the fault tests' helpers).

Two ways to kill a step that runs as its own process, as Airflow runs it:
- from outside after a delay (`kill_after`): wherever the step happens to be;
- at a lake write (`run_step(..., kill=KillAt(...))`): the step runs under this module,
  `python -m tests.crash before _manifest.json 2 jobs.features --ds ...`, which sends SIGKILL to
  its own process just before (or just after) the n-th put of an object whose key ends so: the
  moments of a partition commit that matter (data files written, manifest not yet), hit exactly
  instead of by a timer's luck. Nothing else of the step is changed; the kill is the real signal.

Checks: `checksum` (a partition's rows, order-free, volatile columns left out) and
`visible_partitions_are_whole` (every partition with a manifest reads whole, as the manifest says).
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
KILLED = -signal.SIGKILL


@dataclass(frozen=True)
class KillAt:
    """SIGKILL the step `when` ("before" or "after") the `nth` put of a key ending with `suffix`."""
    when: str
    suffix: str
    nth: int = 1

    def argv(self) -> list[str]:
        return [self.when, self.suffix, str(self.nth)]


def step_env(lake_root: str, **extra: str) -> dict[str, str]:
    """The environment of a step on `lake_root` (local settings; `extra`: MLFLOW_TRACKING_URI, PIPELINE__...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE__")}
    env.update({"LAKE_ROOT": lake_root, "PIPELINE_ENV": "local", "PYSPARK_PYTHON": sys.executable,
                "SPARK_LOCAL_IP": "127.0.0.1", **extra})
    env.pop("PIPELINE_WARM_SOCKET", None)
    return env


def start_step(module: str, args: Sequence[str], env: Mapping[str, str], kill: KillAt | None = None,
               stdout=subprocess.DEVNULL) -> subprocess.Popen:
    """`python -m <module> <args>` in a session of its own (killed at a write when `kill`)."""
    argv = [sys.executable, "-m", *(("tests.crash", *kill.argv()) if kill else ()), module, *args]
    return subprocess.Popen(argv, env=dict(env), cwd=REPO_ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    """Wait for a step; its exit code (-9: killed) and stderr's tail. Whatever it started is killed too."""
    try:
        _, stderr = process.communicate(timeout=timeout)
    finally:
        kill_group(process)
    return process.returncode, (stderr or "")[-4000:]


def run_step(module: str, args: Sequence[str], env: Mapping[str, str], kill: KillAt | None = None,
             timeout: float = 600) -> tuple[int, str]:
    return finish(start_step(module, args, env, kill), timeout)


def read_until(process: subprocess.Popen, text: str, timeout: float = 600) -> str:
    """Read a running step's stderr until a line contains `text` (its log says it got there); the lines read."""
    import threading

    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            if text in line:
                return "".join(lines)
    finally:
        watchdog.cancel()
    raise AssertionError(f"{process.args[2:5]} ended (exit {process.wait()}) before logging {text!r}:\n"
                         + "".join(lines)[-4000:])


def kill_after(process: subprocess.Popen, delay_s: float) -> None:
    """SIGKILL a step (and what it started) `delay_s` after it started, if it still runs (its output is read
    meanwhile, so a full pipe never holds it back)."""
    try:
        process.communicate(timeout=delay_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    kill_group(process)


def kill_group(process: subprocess.Popen) -> None:
    """The step's own children (a Spark JVM, its Python workers) go with it, as in a pod."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def checksum(lake, key: str, ignore: Iterable[str] = ()) -> str:
    """SHA-256 of a partition's rows in a canonical order, without the `ignore` columns (timestamps of the run)."""
    frame = lake.read_partition(key)
    frame = frame.drop(columns=[c for c in ignore if c in frame.columns])
    frame = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def visible_partitions_are_whole(lake, keys: Iterable[str]) -> list[str]:
    """The partitions of `keys` a reader sees (a manifest); each must read whole: the rows, files and
    columns its manifest states. Returns the visible ones."""
    visible = []
    for key in keys:
        if lake.partition_exists(key):
            manifest = lake.read_manifest(key)
            for name in manifest["files"]:
                assert lake.exists(f"{key}/{name}"), f"{key}: the manifest lists {name}, which is missing"
            frame = lake.read_partition(key)
            assert len(frame) == manifest["rows"], f"{key} is partial: {len(frame)} rows, manifest {manifest['rows']}"
            assert list(frame.columns) == manifest["columns"], f"{key}: columns differ from its manifest"
            visible.append(key)
    return visible


def data_files(lake, key: str) -> list[str]:
    """Every object under a partition but its manifest (the files a killed write may leave behind)."""
    return [k for k in lake.list(key) if not k.endswith("/_manifest.json")]


def _arm(kill: KillAt) -> None:
    """Wrap each lake backend's put so that the process kills itself at `kill`'s moment."""
    from jobs import lake

    seen = 0

    def wrap(put):
        def killing_put(self, key: str, data: bytes) -> None:
            nonlocal seen
            hit = key.endswith(kill.suffix)
            seen += hit
            if hit and seen == kill.nth and kill.when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            put(self, key, data)
            if hit and seen == kill.nth and kill.when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
        return killing_put

    for store in (lake._LocalStore, lake._S3Store):
        store.put = wrap(store.put)


if __name__ == "__main__":
    import runpy

    when, suffix, nth, module, *step_args = sys.argv[1:]
    if when not in ("before", "after"):
        raise SystemExit(f"usage: python -m tests.crash before|after KEY_SUFFIX N MODULE [ARGS...], not {when!r}")
    _arm(KillAt(when, suffix, int(nth)))
    sys.argv = [module, *step_args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
