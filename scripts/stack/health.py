"""Is the stack up: its components' status, Airflow's and MLflow's health endpoints, ports, the admin password file, log tails."""
from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import httpx

from scripts.stack.config import ADMIN_USER, AIRFLOW_HEALTH_PARTS


@dataclasses.dataclass
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    pss_mb: float  # the component and all its children
    processes: int
    log: Path


@dataclasses.dataclass
class StackStatus:
    airflow_url: str
    mlflow_url: str
    components: dict[str, ComponentStatus]
    airflow_health: dict[str, Any] | None
    mlflow_healthy: bool
    warm_runner_serving: bool | None = None  # None: the stack has no warm runner

    @property
    def running(self) -> bool:
        """Every component has a live process."""
        return bool(self.components) and all(c.running for c in self.components.values())

    @property
    def healthy(self) -> bool:
        return (self.running and self.mlflow_healthy and not unhealthy_airflow_parts(self.airflow_health)
                and self.warm_runner_serving is not False)

    @property
    def pss_mb(self) -> float:
        return sum(c.pss_mb for c in self.components.values())


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unhealthy_airflow_parts(health: Mapping[str, Any] | None) -> list[str]:
    """The parts of an Airflow health response that are not healthy (all of them if None)."""
    if health is None:
        return list(AIRFLOW_HEALTH_PARTS)
    return [part for part in AIRFLOW_HEALTH_PARTS if (health.get(part) or {}).get("status") != "healthy"]


def airflow_health(url: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """GET /api/v2/monitor/health, or None while the API server does not answer."""
    try:
        response = httpx.get(f"{url}/api/v2/monitor/health", timeout=timeout, trust_env=False)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def mlflow_healthy(url: str, timeout: float = 3.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def read_admin_password(passwords_file: Path, user: str = ADMIN_USER) -> str | None:
    try:
        return json.loads(passwords_file.read_text() or "{}").get(user)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log, for error messages."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
