"""The local stack (scripts/stack.py) for integration tests: throwaway homes, free ports.

Not a test module. It builds a `StackConfig` in a temporary directory and drives the same
`Stack` as `make demo`, so the tests exercise the demo's own start and stop code:

    with IntegrationStack(tmp_path, dags_folder=my_dags) as stack:
        client = stack.client()                 # REST client, logged in as admin
        subprocess.run([...], env=stack.env())  # a CLI that talks to this stack

Metadata database: SQLite in the temporary home, or, with `postgres_server=...`, a fresh
PostgreSQL database created for the run and dropped after it. As a session fixture:

    @pytest.fixture(scope="session")
    def airflow_stack(tmp_path_factory):
        with IntegrationStack(tmp_path_factory.mktemp("stack")) as stack:
            yield stack
"""
from __future__ import annotations

import contextlib
import importlib.util
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from scripts.airflow_api import AirflowClient
from scripts.stack import REPO_ROOT, Stack, StackConfig, StackError

# The PostgreSQL server of the tests (a database is created on it for each stack).
POSTGRES_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct ports nothing listens on (each socket stays bound until all are chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def _connect(server_url: str, database: str = "postgres", timeout: int = 3):
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    return psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password,
        dbname=database, connect_timeout=timeout,
    )


def postgres_skip_reason(server_url: str = POSTGRES_SERVER) -> str | None:
    """Why a PostgreSQL-backed stack cannot run here, or None when it can."""
    if importlib.util.find_spec("asyncpg") is None:
        # Airflow 3 opens an async engine on postgresql+asyncpg beside the sync one.
        return "asyncpg is not installed (Airflow 3 needs it for a PostgreSQL metadata database)"
    try:
        _connect(server_url, timeout=2).close()
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against
        return f"PostgreSQL not reachable at {server_url}: {str(exc).strip()}"
    return None


@contextlib.contextmanager
def postgres_database(server_url: str = POSTGRES_SERVER, prefix: str = "airflow_test") -> Iterator[str]:
    """A new, empty database on `server_url` for the block; dropped after it."""
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = _connect(server_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


class IntegrationStack:
    """Airflow + MLflow of scripts/stack.py in `base_dir`, on free ports.

    dags_folder / plugins_folder default to the repository's. `spark_connect` and
    `warm_runner` add those components (off by default: each costs 1-2 GB). `postgres_server`
    (a server URL without database, e.g. POSTGRES_SERVER) puts the Airflow metadata in a fresh database;
    `mlflow_backend_uri` serves an existing MLflow store (e.g. a copy of a test's SQLite registry).
    After `stop()` (or the `with` block), `leftovers` lists any process still alive; leaving
    the block with leftovers raises StackError.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        dags_folder: Path | None = None,
        plugins_folder: Path | None = None,
        postgres_server: str | None = None,
        lake_root: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        start_timeout: float = 300.0,
        echo: Callable[[str], None] | None = print,
        spark_connect: bool = False,
        warm_runner: bool = False,
        mlflow_backend_uri: str | None = None,
    ):
        self.base_dir = Path(base_dir)
        self.dags_folder = dags_folder or REPO_ROOT / "dags"
        self.plugins_folder = plugins_folder or REPO_ROOT / "plugins"
        self.postgres_server = postgres_server
        self.lake_root = lake_root or str(self.base_dir / "lake")
        self.extra_env = dict(extra_env or {})
        self.start_timeout = start_timeout
        self.echo = echo
        self.spark_connect = spark_connect
        self.warm_runner = warm_runner
        self.mlflow_backend_uri = mlflow_backend_uri
        self.config: StackConfig | None = None
        self.stack: Stack | None = None
        self.leftovers: list[str] = []
        self._resources = contextlib.ExitStack()

    def start(self) -> IntegrationStack:
        try:
            db_url = None
            if self.postgres_server:
                db_url = self._resources.enter_context(postgres_database(self.postgres_server))
            airflow_port, mlflow_port, worker_log_port, trigger_log_port, spark_port = free_ports(5)
            self.config = StackConfig(
                airflow_home=self.base_dir / "airflow",
                mlflow_home=self.base_dir / "mlflow",
                lake_root=self.lake_root,
                dags_folder=self.dags_folder,
                plugins_folder=self.plugins_folder,
                airflow_port=airflow_port,
                mlflow_port=mlflow_port,
                worker_log_port=worker_log_port,
                trigger_log_port=trigger_log_port,
                spark_connect_port=spark_port if self.spark_connect else None,
                warm_runner=self.warm_runner,
                airflow_db_url=db_url,
                mlflow_backend_uri=self.mlflow_backend_uri,
                extra_env=self.extra_env,
            )
            self.stack = Stack(self.config, echo=self.echo)
            self.stack.start(timeout=self.start_timeout)
        except BaseException:
            self._resources.close()
            raise
        return self

    def stop(self, grace: float = 30.0) -> list[str]:
        """Stop the stack, then drop its database; returns the processes left (none if clean)."""
        try:
            if self.stack is not None:
                self.leftovers = self.stack.stop(grace=grace)
        finally:
            self._resources.close()
        return self.leftovers

    def __enter__(self) -> IntegrationStack:
        return self.start()

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        leftovers = self.stop()
        if leftovers and exc_type is None:
            raise StackError("processes left after stop:\n  " + "\n  ".join(leftovers))

    def client(self) -> AirflowClient:
        return self._started().client()

    def env(self) -> dict[str, str]:
        """Environment for a CLI (`airflow ...`, `python -m jobs....`) that uses this stack."""
        return self._started().config.airflow_env()

    def _started(self) -> Stack:
        if self.stack is None:
            raise StackError("the stack is not started")
        return self.stack


@contextlib.contextmanager
def mlflow_server(base_dir: Path, backend_uri: str | None = None, timeout: float = 120.0) -> Iterator[str]:
    """A real `mlflow server` on a free port (SQLite in base_dir unless `backend_uri`); yields its URL.

    The same command line as the local stack's (scripts/stack.py), artifacts served by the server.
    """
    import subprocess

    from scripts.stack import mlflow_healthy

    base_dir.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    config = StackConfig(airflow_home=base_dir / "airflow", mlflow_home=base_dir, lake_root=str(base_dir / "lake"),
                         mlflow_port=port, mlflow_backend_uri=backend_uri)
    (base_dir / "artifacts").mkdir(exist_ok=True)
    log = open(base_dir / "mlflow-server.log", "wb")
    process = subprocess.Popen(config.commands()["mlflow"], env=config.mlflow_env(), cwd=base_dir, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until(lambda: mlflow_healthy(config.mlflow_url), process, base_dir / "mlflow-server.log", timeout)
        yield config.mlflow_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextlib.contextmanager
def warm_runner(base_dir: Path, env: Mapping[str, str] | None = None, timeout: float = 300.0) -> Iterator[Path]:
    """A real warm step runner (jobs/warm.py) serving on a socket in base_dir; yields the socket's path.

    The same command line as the local stack's; its environment is the caller's with `env`
    applied (the settings' variables cleared), its log base_dir/warm-runner.log. Stopped with
    SIGINT (Ctrl-C) after the block, which must end it cleanly: exit 0, socket removed.
    """
    import os
    import signal
    import subprocess

    from jobs.warm import serving
    from scripts.stack import WARM_RUNNER

    base_dir.mkdir(parents=True, exist_ok=True)
    config = StackConfig(airflow_home=base_dir, mlflow_home=base_dir, lake_root=str(base_dir / "lake"), warm_runner=True)
    settings_vars = ("PIPELINE_ENV", "LAKE_ROOT", "MLFLOW_TRACKING_URI", "PIPELINE_WARM_SOCKET")
    process_env = {k: v for k, v in os.environ.items() if k not in settings_vars and not k.startswith("PIPELINE__")}
    process_env.update(env or {})
    log_path = base_dir / f"{WARM_RUNNER}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(config.commands()[WARM_RUNNER], env=process_env, cwd=REPO_ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_until(lambda: serving(config.warm_socket), process, log_path, timeout)
        yield config.warm_socket
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        assert code == 0 and not config.warm_socket.exists(), f"exit {code}:\n{log_path.read_text()[-3000:]}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_until(ready: Callable[[], bool], process, log_path: Path, timeout: float) -> None:
    """Wait for a server process to be ready; RuntimeError with its log's tail if it exits or times out."""
    import time

    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{process.args[:4]} did not start (exit {process.poll()}):\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)
