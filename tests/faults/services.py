"""Services the fault tests stop with SIGKILL mid-step and start again: the stack's own command lines.

Not a test module. `Service` runs one server process in a session of its own (so killing it takes its
children too) and starts it again on the same port with the same store, as a restarted pod would.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.integration.stack import _wait_until, free_ports


class Service:
    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], base_dir: Path,
                 ready: Callable[[], bool], timeout: float = 240.0):
        self.name, self.argv, self.env, self.ready, self.timeout = name, list(argv), dict(env), ready, timeout
        self.base_dir = Path(base_dir)
        self.log_path = self.base_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Service":
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.base_dir, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_until(self.ready, self.process, self.log_path, self.timeout)
        return self

    def kill(self) -> None:
        """SIGKILL, the whole process group (a server's workers, a JVM under its launcher script)."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=60)
            self.process = None

    def __enter__(self) -> "Service":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


def mlflow_service(base_dir: Path, backend_uri: str) -> tuple[Service, str]:
    """The local stack's `mlflow server` (scripts/stack) on a free port over `backend_uri`; (service, its URL)."""
    from scripts.stack import StackConfig, mlflow_healthy

    (port,) = free_ports(1)
    config = StackConfig(airflow_home=base_dir / "airflow", mlflow_home=base_dir, lake_root=str(base_dir / "lake"),
                         mlflow_port=port, mlflow_backend_uri=backend_uri)
    (base_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    service = Service("mlflow", config.commands()["mlflow"], config.mlflow_env(), base_dir,
                      lambda: mlflow_healthy(config.mlflow_url))
    return service, config.mlflow_url


def moto_service(base_dir: Path) -> tuple[Service, str]:
    """moto's S3 server as a process of its own (`moto_server`), on a free loopback port; (service, endpoint)."""
    import urllib.request

    (port,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return True
        except OSError:
            return False

    argv = [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)]
    return Service("moto", argv, {**os.environ, **S3_CREDENTIALS}, base_dir, ready), endpoint


S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def s3_front_service(base_dir: Path, moto_endpoint: str, die_at: str | None = None) -> tuple[Service, str]:
    """tests/faults/s3_front.py before moto on a free port, dying at a request line containing `die_at`."""
    from tests.crash import REPO_ROOT

    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "tests.faults.s3_front", str(port), moto_endpoint.rsplit(":", 1)[1],
            *([die_at] if die_at else [])]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return Service("s3-front", argv, env, base_dir, lambda: _port_open(port)), f"http://127.0.0.1:{port}"


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def spark_connect_service(base_dir: Path) -> tuple[Service, str]:
    """The local stack's Spark Connect server (scripts/stack/config.py) on a free port; (service, sc:// URL)."""
    from scripts.stack import StackConfig

    (port,) = free_ports(1)
    config = StackConfig(airflow_home=base_dir, mlflow_home=base_dir, lake_root=str(base_dir / "lake"),
                         spark_connect_port=port, spark_connect_memory="1g")

    from scripts.stack.config import SPARK_CONNECT

    return (Service("spark-connect", config.commands()[SPARK_CONNECT], config.spark_connect_env(), base_dir,
                    lambda: _port_open(port),
                    timeout=300), config.spark_remote)
