"""The warm runner's messages: StepRequest, the JSON frames on the socket, and its errors."""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

WARM_SOCKET_ENV = "PIPELINE_WARM_SOCKET"  # set for the Airflow components of the local stack


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



def send(conn: Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(message).encode("utf-8"))


def receive(conn: Connection) -> dict[str, Any]:
    message = json.loads(conn.recv_bytes())
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message

