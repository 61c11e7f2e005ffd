"""The stack's state file and lock: which component runs under which PID (checked by its start time), what it was started with."""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

import psutil

from scripts.stack.config import StackConfig


@contextlib.contextmanager
def stack_lock(config: StackConfig) -> Iterator[None]:
    """One start or stop of this Airflow home at a time (across processes)."""
    config.airflow_home.mkdir(parents=True, exist_ok=True)
    with open(config.airflow_home / ".stack.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_state(config: StackConfig) -> dict[str, Any] | None:
    try:
        return json.loads(config.state_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_state(config: StackConfig, popen: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """Record the components started so far (PID, start time, command, log), atomically."""
    components = {}
    for name, process in popen.items():
        try:
            create_time = psutil.Process(process.pid).create_time()
        except psutil.Error:
            continue
        components[name] = {
            "pid": process.pid,
            "create_time": create_time,
            "command": " ".join(config.commands()[name][1:4]),
            "log": str(config.log_file(name)),
        }
    state = {
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "airflow_url": config.airflow_url,
        "mlflow_url": config.mlflow_url,
        "config": config.to_json(),
        "components": components,
    }
    tmp = config.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(config.state_file)


def clear_state(config: StackConfig) -> None:
    config.state_file.unlink(missing_ok=True)
