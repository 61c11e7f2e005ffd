"""The local stack behind `make demo`: Airflow 3, an MLflow server, a Spark Connect server and a warm step runner, in the background.

    python -m scripts.stack start [--timeout S]   # idempotent: says so when already running
    python -m scripts.stack status                # what runs, where, healthy or not
    python -m scripts.stack stop [--grace S]      # Ctrl-C each component, then verify nothing is left

Defaults (DESIGN.md): Airflow home `.airflow/` (SQLite metadata, LocalExecutor), UI and REST
API on 127.0.0.1:8080 (`AIRFLOW_PORT`), MLflow on 127.0.0.1:5000 (`MLFLOW_PORT`) with its
registry in `.mlflow/mlflow.db` and artifacts served from `.mlflow/artifacts`, lake in
`data/lake` (`LAKE_ROOT`), Spark Connect on 127.0.0.1:15002 (`SPARK_CONNECT_PORT`), the warm
step runner on the Unix socket `.airflow/warm.sock`. Logs: `.airflow/logs/<component>.log`,
`.mlflow/server.log`.

Why a Spark Connect server: every Spark step is a fresh process (a task's subprocess), and a
local SparkSession costs a JVM start and warm-up of 6-10 s per process, which a backfill
of daily runs would pay once per day and stage. The stack's tasks get
`PIPELINE__SPARK__REMOTE=sc://...` and become thin clients (a session in ~1 s) of one
long-lived local[2] Spark; bench/bench_features.py measures the difference.

Why a warm step runner (jobs/warm.py, local runner only): every heavy step is also a fresh
interpreter that imports Great Expectations, Evidently, MLflow, pyspark and torch again, seconds
per task. The runner imports them once; the Airflow components get
`PIPELINE_WARM_SOCKET=<airflow home>/warm.sock`, and SubprocessStepOperator runs each step in
a fork of it (the same CLI, argv, environment, output and exit code), or, when nothing answers
there, as a fresh subprocess as before.

Why the Airflow components one by one rather than `airflow standalone`:
- `airflow db migrate` runs first, alone, so a database problem fails fast with its own log;
- each component (api-server, scheduler, dag-processor, triggerer) runs in its own session
  with its own log and PID in the state file, so a component that dies is named, and its log
  tail shown, instead of `standalone` going on with a hole in it;
- stopping is what a terminal does on Ctrl-C: SIGINT to each component's process group.
  `standalone` stops its children only when it gets SIGINT itself (SIGTERM orphans them),
  and it pipes all their output through itself;
- it is the production shape (DESIGN.md, Services), only on one host.

Which processes belong to the stack (for stop and the leak check) is decided without trusting
PIDs alone: each component leads a session of its own, and its LocalExecutor workers, task
supervisors, tasks (own process groups) and uvicorn workers stay in that session even when
re-parented to init. Each component also carries `PIPELINE_STACK_HOME=<airflow home>` in its
environment, inherited by what a task starts in a session of its own. Details: `Stack.processes`.

`StackConfig` holds everything that differs between stacks (homes, ports, database URLs,
lake, DAG and plugin folders); `Stack(config)` starts, inspects and stops one.
tests/integration/stack.py builds a throwaway config on free ports and reuses all of this.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psutil

from jobs.warm import WARM_SOCKET_ENV, serving
from scripts.airflow_api import AirflowClient

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_MARK = "PIPELINE_STACK_HOME"
ADMIN_USER = "admin"
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SPARK_CONNECT = "spark-connect"
WARM_RUNNER = "warm-runner"
# How each component is asked to stop: Airflow's components shut down cleanly on SIGINT, as
# on Ctrl-C. MLflow's uvicorn does too, but re-raises it as a KeyboardInterrupt traceback in
# the log; SIGTERM is its documented graceful stop, and the JVM's (shutdown hooks run).
# The warm runner stops on either; its relays pass SIGTERM on to the steps they run.
STOP_SIGNALS = {"mlflow": signal.SIGTERM, SPARK_CONNECT: signal.SIGTERM, WARM_RUNNER: signal.SIGTERM}
# Stop order: what runs tasks first, then what tasks talk to (see Stack.stop).
STOP_WAVES = (("scheduler", "triggerer", "dag-processor"), ("api-server", "mlflow", SPARK_CONNECT, WARM_RUNNER))
# The parts of GET /api/v2/monitor/health that must report "healthy".
AIRFLOW_HEALTH_PARTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")
# Variables of the caller that must not leak into the stack: another Airflow's settings, or
# the pipeline's own variables, which the stack sets itself.
_NOT_INHERITED_PREFIXES = ("AIRFLOW__",)
_NOT_INHERITED = {
    "AIRFLOW_HOME", "AIRFLOW_CONFIG", "AIRFLOW_API_APPS",
    "LAKE_ROOT", "MLFLOW_TRACKING_URI", "PIPELINE_ENV", STACK_MARK,
}

Echo = Callable[[str], None]


class StackError(RuntimeError):
    """The stack could not be started or stopped cleanly; the message says why and shows logs."""


def _echo(message: str) -> None:
    print(message, flush=True)


@dataclasses.dataclass(frozen=True)
class StackConfig:
    """Where one stack lives and listens. `StackConfig.local()` is the demo's."""

    airflow_home: Path
    mlflow_home: Path
    lake_root: str
    dags_folder: Path = REPO_ROOT / "dags"
    plugins_folder: Path = REPO_ROOT / "plugins"
    host: str = "127.0.0.1"
    airflow_port: int = 8080
    mlflow_port: int = 5000
    # serve-logs of the scheduler (LocalExecutor workers) and of the triggerer: the API reads
    # a running task's log through them.
    worker_log_port: int = 8793
    trigger_log_port: int = 8794
    # None: SQLite files in the homes.
    airflow_db_url: str | None = None
    mlflow_backend_uri: str | None = None
    # A Spark Connect server the Spark steps use as clients (spark.remote), so a run pays
    # ~0.5 s for its session instead of a JVM start; None: each step starts its own Spark.
    spark_connect_port: int | None = None
    spark_connect_memory: str = "2g"
    # A warm step runner (jobs/warm.py) for the tasks' steps: the local runner only.
    warm_runner: bool = False
    # LocalExecutor slots: 2 cores, and a task is itself a Spark or torch subprocess.
    parallelism: int = 4
    pipeline_env: str = "local"
    # Applied last to the Airflow components' environment: AIRFLOW__SECTION__KEY overrides.
    extra_env: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def local(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        """The demo stack of this checkout; ports from AIRFLOW_PORT / MLFLOW_PORT / SPARK_CONNECT_PORT /
        WORKER_LOG_PORT / TRIGGER_LOG_PORT if set (a second stack on the machine needs all five)."""
        environ = os.environ if environ is None else environ
        from jobs.settings import get_settings  # the lake root and MLflow URI are written once, there

        settings = get_settings()
        default_mlflow_port = urlparse(settings.mlflow.tracking_uri).port or 5000
        return cls(
            airflow_home=REPO_ROOT / ".airflow",
            mlflow_home=REPO_ROOT / ".mlflow",
            lake_root=settings.lake_root,
            airflow_port=int(environ.get("AIRFLOW_PORT", 8080)),
            mlflow_port=int(environ.get("MLFLOW_PORT", default_mlflow_port)),
            spark_connect_port=int(environ.get("SPARK_CONNECT_PORT", 15002)),
            worker_log_port=int(environ.get("WORKER_LOG_PORT", 8793)),
            trigger_log_port=int(environ.get("TRIGGER_LOG_PORT", 8794)),
            warm_runner=settings.runner.kind == "subprocess",
        )

    # -- derived locations -----------------------------------------------------------------

    @property
    def components(self) -> tuple[str, ...]:
        """The processes of this stack, in start order."""
        spark = (SPARK_CONNECT,) if self.spark_connect_port else ()
        warm = (WARM_RUNNER,) if self.warm_runner else ()
        return ("mlflow", *spark, *warm, *AIRFLOW_COMPONENTS)

    @property
    def spark_remote(self) -> str | None:
        return f"sc://{self.host}:{self.spark_connect_port}" if self.spark_connect_port else None

    @property
    def warm_socket(self) -> Path:
        """The warm runner's Unix socket (mode 0600, in the Airflow home)."""
        return self.airflow_home / "warm.sock"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def state_file(self) -> Path:
        return self.airflow_home / "stack.json"

    @property
    def log_dir(self) -> Path:
        return self.airflow_home / "logs"

    @property
    def passwords_file(self) -> Path:
        """Where SimpleAuthManager writes the generated admin password."""
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    @property
    def sql_alchemy_conn(self) -> str:
        return self.airflow_db_url or f"sqlite:///{self.airflow_home / 'airflow.db'}"

    @property
    def mlflow_backend(self) -> str:
        return self.mlflow_backend_uri or f"sqlite:///{self.mlflow_home / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow_home / "artifacts"

    def log_file(self, component: str) -> Path:
        if component == "mlflow":
            return self.mlflow_home / "server.log"
        return self.log_dir / f"{component}.log"

    # -- environments --------------------------------------------------------------------

    def pipeline_env_vars(self) -> dict[str, str]:
        """What a pipeline step (`python -m jobs.<step>`) needs to use this stack."""
        env = {
            "PIPELINE_ENV": self.pipeline_env,
            "LAKE_ROOT": self.lake_root,
            "MLFLOW_TRACKING_URI": self.mlflow_url,
        }
        if self.spark_remote:
            env["PIPELINE__SPARK__REMOTE"] = self.spark_remote
        return env

    def base_env(self) -> dict[str, str]:
        """The caller's environment without another Airflow's settings, plus the pipeline's."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in _NOT_INHERITED and not key.startswith(_NOT_INHERITED_PREFIXES)
        }
        venv_bin = str(Path(sys.executable).parent)  # not resolved: a venv's python is a symlink
        env["PATH"] = os.pathsep.join(p for p in (venv_bin, env.get("PATH", "")) if p)
        no_proxy = ",".join(p for p in (env.get("NO_PROXY", ""), "127.0.0.1,localhost") if p)
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
        env.update(self.pipeline_env_vars())
        return env

    def airflow_env(self) -> dict[str, str]:
        """The environment of every Airflow process of this stack (and of `airflow` CLI calls)."""
        env = self.base_env()
        env.update(
            {
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(self.parallelism),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                # Tasks reach the Execution API of this api-server, not the default localhost:8080.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(self.airflow_port),
                "AIRFLOW__API__BASE_URL": self.airflow_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
                # Snappy locally: new DAG files are seen within 10 s, changed ones re-parsed
                # within 30 s; two parsing processes for two cores.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "5",
                "AIRFLOW__SCHEDULER__CATCHUP_BY_DEFAULT": "False",
            }
        )
        if self.warm_runner:
            env[WARM_SOCKET_ENV] = str(self.warm_socket)  # SubprocessStepOperator runs steps there
        env.update(self.extra_env)
        return env

    def mlflow_env(self) -> dict[str, str]:
        env = self.base_env()
        # The job runner (huey consumers for GenAI jobs) is not needed and costs memory.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        return env

    def spark_connect_env(self) -> dict[str, str]:
        env = self.base_env()
        env.pop("PIPELINE__SPARK__REMOTE", None)  # the server is not a client of itself
        env.update({
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": self.host,
            "SPARK_NO_DAEMONIZE": "1",  # stay in the foreground: the stack owns the process
            "SPARK_LOG_DIR": str(self.log_dir),
            "SPARK_PID_DIR": str(self.airflow_home),
        })
        return env

    def warm_runner_env(self) -> dict[str, str]:
        """The pipeline's environment: what libraries read when imported comes from here (jobs/warm.py)."""
        return self.base_env()

    def commands(self) -> dict[str, list[str]]:
        """The command line of each component."""
        airflow = [sys.executable, "-m", "airflow"]
        port = ["--host", self.host, "--port", str(self.airflow_port), "--workers", "1"]
        spark = {SPARK_CONNECT: spark_connect_command(self.host, self.spark_connect_port, self.spark_connect_memory)} \
            if self.spark_connect_port else {}
        warm = {WARM_RUNNER: [sys.executable, "-m", "jobs.warm", "serve", "--socket", str(self.warm_socket)]} \
            if self.warm_runner else {}
        return {
            **spark,
            **warm,
            "mlflow": [
                sys.executable, "-m", "mlflow", "server",
                "--host", self.host,
                "--port", str(self.mlflow_port),
                "--workers", "1",
                "--backend-store-uri", self.mlflow_backend,
                # Clients upload and download artifacts through the server (mlflow-artifacts:/),
                # so a task, a pod or a laptop need no access to the artifact store itself.
                "--serve-artifacts",
                "--artifacts-destination", self.mlflow_artifacts.as_uri(),
            ],
            "api-server": [*airflow, "api-server", *port],
            "scheduler": [*airflow, "scheduler"],
            "dag-processor": [*airflow, "dag-processor"],
            "triggerer": [*airflow, "triggerer"],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            field.name: (str(value) if isinstance(value, Path) else value)
            for field in dataclasses.fields(self)
            if not isinstance(value := getattr(self, field.name), Mapping)
        }


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


def spark_connect_command(host: str, port: int, driver_memory: str = "2g") -> list[str]:
    """The Spark Connect server of pyspark's own distribution, in the foreground, on loopback.

    It runs local[2] with the session properties the jobs fix (jobs/spark.py FIXED_CONF), so
    a client session behaves like an in-process one.
    """
    import pyspark

    from jobs.spark import FIXED_CONF

    script = Path(pyspark.__file__).parent / "sbin" / "start-connect-server.sh"
    conf = {
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        **FIXED_CONF,
    }
    # Components are exec'ed by path (see _EXEC_WITH_DEFAULT_SIGINT): bash by its full path.
    return [shutil.which("bash") or "/bin/bash", str(script), "--wait", "--master", "local[2]", "--driver-memory", driver_memory,
            *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}"))]


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


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({' '.join(proc.cmdline())[:160]})"
    except psutil.Error:
        return f"pid {proc.pid}"


# A process started in the background by a non-interactive shell inherits SIGINT ignored,
# and an ignored signal stays ignored across exec: the component would then not stop on
# SIGINT. Each component is exec'ed through this with SIGINT back to its default (rather
# than a preexec_fn, which is unsafe when the caller has threads, as a test runner may).
_EXEC_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


class Stack:
    """Start, inspect and stop the processes of one `StackConfig`."""

    def __init__(self, config: StackConfig, echo: Echo | None = _echo):
        self.config = config
        self._echo = echo or (lambda message: None)
        self._popen: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- public ----------------------------------------------------------------------------

    def start(self, timeout: float = 300.0) -> bool:
        """Start every component and wait until all are healthy.

        Returns False (and starts nothing) when the stack already runs. A stack left half
        alive (a component died) is stopped and started again. On failure everything started
        is stopped and StackError carries the reason and the failing logs' tails.
        """
        config = self.config
        with self._lock():
            state = self._read_state()
            tracked = self._tracked(state)
            if state and tracked and set(tracked) == set(config.components):
                self._echo(f"stack already running (Airflow {state['airflow_url']}, MLflow {state['mlflow_url']})")
                return False
            if tracked:
                dead = sorted(set(config.components) - set(tracked))
                self._echo(f"stack is partly running (not running: {', '.join(dead)}); restarting it")
            if tracked or self._processes(state):
                self._stop_locked(grace=30.0)  # what is left of an earlier stack
            self._clear_state()
            self._check_environment()
            started = time.monotonic()
            for folder in (config.airflow_home, config.log_dir, config.mlflow_home, config.mlflow_artifacts):
                folder.mkdir(parents=True, exist_ok=True)
            if "://" not in config.lake_root:
                Path(config.lake_root).mkdir(parents=True, exist_ok=True)
            commands = config.commands()
            try:
                # MLflow and Spark take a few seconds to come up: let them overlap the migration.
                self._spawn("mlflow", commands["mlflow"], config.mlflow_env(), cwd=config.mlflow_home)
                if SPARK_CONNECT in commands:
                    self._spawn(SPARK_CONNECT, commands[SPARK_CONNECT], config.spark_connect_env(),
                                cwd=config.airflow_home)
                if WARM_RUNNER in commands:  # its imports (10-20 s) overlap the migration too
                    self._spawn(WARM_RUNNER, commands[WARM_RUNNER], config.warm_runner_env(), cwd=config.airflow_home)
                self._write_state()
                self._migrate()
                for name in AIRFLOW_COMPONENTS:
                    self._spawn(name, commands[name], config.airflow_env(), cwd=config.airflow_home)
                self._write_state()
                self._wait_healthy(started + timeout)
            except BaseException:
                self._echo("start failed; stopping what was started")
                self._stop_locked(grace=15.0)
                raise
        status = self.status()
        self._echo(f"stack started in {time.monotonic() - started:.0f} s, {status.pss_mb / 1024:.1f} GiB (PSS)")
        self._print_endpoints()
        return True

    def stop(self, grace: float = 30.0) -> list[str]:
        """Stop every process of the stack; returns descriptions of any left (none if clean).

        SIGINT to each component's process group (what Ctrl-C in its terminal does; SIGTERM
        for MLflow): first the scheduler, triggerer and dag processor, which get up to `grace`
        seconds (the scheduler lets running tasks finish), then the API server and MLflow,
        which the tasks talk to until their end. Then SIGTERM, and at last SIGKILL, to
        whatever is left (see `processes`); a final scan must find nothing.
        """
        with self._lock():
            return self._stop_locked(grace)

    def status(self) -> StackStatus:
        state = self._read_state() or {}
        tracked = self._tracked(state)
        airflow_url = state.get("airflow_url", self.config.airflow_url)
        mlflow_url = state.get("mlflow_url", self.config.mlflow_url)
        components = {}
        for name in self.config.components:
            proc = tracked.get(name)
            family = [proc, *self._children(proc)] if proc else []
            components[name] = ComponentStatus(
                name=name,
                pid=proc.pid if proc else None,
                running=proc is not None,
                pss_mb=sum(_pss(p) for p in family) / 2**20,
                processes=len(family),
                log=self.config.log_file(name),
            )
        any_running = bool(tracked)
        return StackStatus(
            airflow_url=airflow_url,
            mlflow_url=mlflow_url,
            components=components,
            airflow_health=airflow_health(airflow_url) if any_running else None,
            mlflow_healthy=mlflow_healthy(mlflow_url) if any_running else False,
            warm_runner_serving=(any_running and serving(self.config.warm_socket)) if self.config.warm_runner else None,
        )

    def print_status(self) -> StackStatus:
        status = self.status()
        if not any(c.running for c in status.components.values()):
            self._echo("stack is not running (start it: python -m scripts.stack start)")
            return status
        self._print_endpoints(status)
        for c in status.components.values():
            where = f"pid {c.pid:<7} {c.processes:>2} proc {c.pss_mb:6.0f} MB" if c.running else "NOT RUNNING"
            self._echo(f"  {c.name:<14} {where}  log {_rel(c.log)}")
        parts = ", ".join(
            f"{part} {(status.airflow_health or {}).get(part, {}).get('status', 'unknown')}"
            for part in AIRFLOW_HEALTH_PARTS
        )
        warm = {None: "", True: "; warm runner serving", False: "; warm runner NOT serving"}[status.warm_runner_serving]
        self._echo(f"  health: {parts}; mlflow {'healthy' if status.mlflow_healthy else 'NOT healthy'}{warm}")
        self._echo(f"  memory: {status.pss_mb / 1024:.1f} GiB (PSS of every process of the stack)")
        return status

    def admin_credentials(self, timeout: float = 0.0) -> tuple[str, str]:
        return get_admin_credentials(self.config, timeout=timeout)

    def client(self, timeout: float = 30.0) -> AirflowClient:
        """A REST client logged in as the admin user."""
        user, password = self.admin_credentials()
        return AirflowClient(self.config.airflow_url, user, password, timeout=timeout)

    def processes(self) -> list[psutil.Process]:
        """Every live process of this stack, wherever it is in the process tree.

        A process belongs to the stack if it is
        - in the session of a running component (its start time checked against the state
          file, so a recycled PID is not taken for it), or
        - carries the stack's mark in its environment (a task's subprocess that started a
          session of its own, e.g. BashOperator's), or
        - descends from a running component, or
        - is left from a component that died: in its session, started after it, and running
          in one of the stack's homes (the components' working directories). The mark alone
          would not find these: `setproctitle` (Airflow's "airflow worker", "airflow
          serve-logs" titles) overwrites the memory that /proc/<pid>/environ reads.
        """
        return list(self._processes(self._read_state()).values())

    def leftover_processes(self) -> list[str]:
        """Descriptions of processes of this stack still alive (empty once stopped)."""
        return [_describe(p) for p in self.processes()]

    # -- start -----------------------------------------------------------------------------

    def _check_environment(self) -> None:
        config = self.config
        ports = {
            "Airflow API server, AIRFLOW_PORT": config.airflow_port,
            "MLflow, MLFLOW_PORT": config.mlflow_port,
            "worker log server": config.worker_log_port,
            "trigger log server": config.trigger_log_port,
        }
        if config.spark_connect_port:
            ports["Spark Connect server, SPARK_CONNECT_PORT"] = config.spark_connect_port
        if len(set(ports.values())) != len(ports):
            raise StackError(f"ports must differ: {ports}")
        if config.warm_runner and serving(config.warm_socket):
            raise StackError(f"a warm runner of another stack serves at {config.warm_socket}; stop it first")
        busy = [f"{config.host}:{port} ({what})" for what, port in ports.items() if not port_free(config.host, port)]
        if busy:
            raise StackError(
                f"port in use by another program: {', '.join(busy)}; stop that program or choose "
                "other ports"
            )
        for module in ("airflow", "mlflow"):
            if importlib.util.find_spec(module) is None:
                raise StackError(f"{module} is not installed for {sys.executable}; run `make venv`")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        """Start one component in a session of its own, detached from any terminal."""
        log = self.config.log_file(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        if log.exists():
            log.replace(log.with_name(log.name + ".1"))  # keep the previous run's log
        env = {**env, STACK_MARK: str(self.config.airflow_home)}
        with open(log, "wb") as out:
            self._popen[name] = subprocess.Popen(
                [sys.executable, "-c", _EXEC_WITH_DEFAULT_SIGINT, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,  # detached from the terminal; its own process group
            )

    def _migrate(self) -> None:
        log = self.config.log_dir / "db-migrate.log"
        self._echo(f"airflow db migrate ({_redact(self.config.sql_alchemy_conn)})")
        with open(log, "wb") as out:
            result = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.config.airflow_env(),
                cwd=REPO_ROOT,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(f"airflow db migrate failed (exit {result.returncode}); {_rel(log)}:\n{tail(log)}")

    def _wait_healthy(self, deadline: float) -> None:
        config = self.config
        self._echo(f"waiting for MLflow on {config.mlflow_url} and Airflow on {config.airflow_url} ...")
        last_waiting: list[str] = []
        while True:
            for name, popen in self._popen.items():
                if popen.poll() is not None:
                    raise StackError(
                        f"{name} exited with code {popen.returncode} while starting; "
                        f"{_rel(config.log_file(name))}:\n{tail(config.log_file(name))}"
                    )
            waiting = []
            if not mlflow_healthy(config.mlflow_url):
                waiting.append("mlflow")
            if config.spark_connect_port and not port_open(config.host, config.spark_connect_port):
                waiting.append(SPARK_CONNECT)
            if config.warm_runner and not serving(config.warm_socket):
                waiting.append(WARM_RUNNER)
            health = airflow_health(config.airflow_url)
            waiting += ["api-server"] if health is None else unhealthy_airflow_parts(health)
            if health is not None and read_admin_password(config.passwords_file) is None:
                waiting.append("admin password file")
            if not waiting:
                return
            if waiting != last_waiting:
                self._echo(f"  waiting for: {', '.join(waiting)}")
                last_waiting = waiting
            if time.monotonic() > deadline:
                logs = {_component_of(part) for part in waiting}
                tails = "\n\n".join(f"--- {_rel(config.log_file(n))}\n{tail(config.log_file(n))}" for n in sorted(logs))
                raise StackError(f"not healthy in time: {', '.join(waiting)}\n{tails}")
            time.sleep(1.0)

    # -- stop ------------------------------------------------------------------------------

    def _stop_locked(self, grace: float) -> list[str]:
        state = self._read_state()
        tracked = self._tracked(state)
        procs = self._processes(state)
        if not procs:
            self._echo("stack is not running")
            self._clear_state()
            return []
        names = ", ".join(tracked) or "what is left of it"
        self._echo(f"stopping {names} ({len(procs)} processes) ...")
        started = time.monotonic()
        components = _components(state)
        # Left-overs of a component that died have nobody to shut them down in order (idle
        # LocalExecutor workers even ignore SIGINT): SIGTERM now, SIGKILL after a few seconds.
        orphans = {proc.pid: proc for proc in self._orphans(procs, state)}
        for proc in orphans.values():
            _send(proc, signal.SIGTERM)
        # 1. Ctrl-C for each component's process group (SIGTERM for MLflow), in two waves:
        #    running tasks report their end through the API server (Execution API) and may
        #    log to MLflow, so those two stop only once the scheduler and its tasks are done.
        #    The scheduler waits for running tasks: that is what the grace period is for.
        for index, wave in enumerate(STOP_WAVES):
            # The first wave gets the grace period, the API server and MLflow a short one.
            deadline = started + grace if index == 0 else time.monotonic() + 15.0
            later = {components[name]["pid"] for name in _flatten(STOP_WAVES[index + 1 :]) if name in components}
            live_groups = {_pgid(proc) for proc in self._processes(state).values()}
            for name in wave:
                entry = components.get(name)
                if entry and entry["pid"] in live_groups:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(entry["pid"], STOP_SIGNALS.get(name, signal.SIGINT))
            while True:
                self._reap()
                pending = [p for p in self._processes(state).values() if not _under(p, later)]
                if orphans and time.monotonic() > started + 5.0:
                    for proc in orphans.values():
                        _send(proc, signal.SIGKILL)
                    orphans = {}
                if not pending or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            if pending:
                break  # out of time: escalate below
        # 2. and 3. Whatever did not stop on Ctrl-C.
        alive = list(self._processes(state).values())
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if not alive:
                break
            self._echo(f"  {len(alive)} processes still running after {time.monotonic() - started:.0f} s; {sig.name}")
            for proc in alive:
                _send(proc, sig)
            alive = self._wait_gone({p.pid: p for p in alive}, state, wait)
        self._reap()
        leftovers = [_describe(p) for p in self._processes(state).values()]
        if leftovers:
            self._echo("processes left running:\n  " + "\n  ".join(leftovers))
        else:
            self._echo(f"stopped in {time.monotonic() - started:.0f} s; no process left")
            self._clear_state()
        return leftovers

    def _orphans(self, procs: Mapping[int, psutil.Process], state: Mapping[str, Any] | None) -> list[psutil.Process]:
        """Processes whose component died: re-parented to init, or in a dead component's session."""
        live = {proc.pid for proc in self._tracked(state).values()}
        dead = {entry["pid"] for entry in _components(state).values()} - live
        orphans = []
        for proc in procs.values():
            try:
                if proc.pid not in live and (proc.ppid() == 1 or os.getsid(proc.pid) in dead):
                    orphans.append(proc)
            except (psutil.Error, OSError):
                continue
        return orphans

    def _wait_gone(
        self, procs: dict[int, psutil.Process], state: Mapping[str, Any] | None, timeout: float
    ) -> list[psutil.Process]:
        """Wait until the processes are gone (re-scanning: shutting down can start some)."""
        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            procs = {pid: p for pid, p in {**procs, **self._processes(state)}.items() if _alive(p)}
            if not procs or time.monotonic() > deadline:
                return list(procs.values())
            time.sleep(0.25)

    def _processes(self, state: Mapping[str, Any] | None) -> dict[int, psutil.Process]:
        """See `processes`; `state` names the components and so their sessions."""
        recorded = {entry["pid"]: entry["create_time"] for entry in _components(state).values()}
        live = {proc.pid for proc in self._tracked(state).values()}
        homes = (self.config.airflow_home, self.config.mlflow_home)
        mark = str(self.config.airflow_home)
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
                if ours and _alive(proc):
                    found[proc.pid] = proc
            except (psutil.Error, OSError):  # gone, or another user's
                continue
        for proc in self._tracked(state).values():
            for child in self._children(proc):
                if child.pid not in exclude and _alive(child):
                    found.setdefault(child.pid, child)
        return found

    @staticmethod
    def _children(proc: psutil.Process) -> list[psutil.Process]:
        try:
            return proc.children(recursive=True)
        except psutil.Error:
            return []

    def _reap(self) -> None:
        """Collect the exit status of components started by this process (no zombies)."""
        for popen in self._popen.values():
            popen.poll()

    # -- state -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.config.airflow_home.mkdir(parents=True, exist_ok=True)
        with open(self.config.airflow_home / ".stack.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.config.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _write_state(self) -> None:
        components = {}
        for name, popen in self._popen.items():
            try:
                create_time = psutil.Process(popen.pid).create_time()
            except psutil.Error:
                continue
            components[name] = {
                "pid": popen.pid,
                "create_time": create_time,
                "command": " ".join(self.config.commands()[name][1:4]),
                "log": str(self.config.log_file(name)),
            }
        state = {
            "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "airflow_url": self.config.airflow_url,
            "mlflow_url": self.config.mlflow_url,
            "config": self.config.to_json(),
            "components": components,
        }
        tmp = self.config.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.config.state_file)

    def _clear_state(self) -> None:
        self.config.state_file.unlink(missing_ok=True)

    @staticmethod
    def _tracked(state: Mapping[str, Any] | None) -> dict[str, psutil.Process]:
        """Components of the state file that still run (the same process: PID and start time)."""
        tracked = {}
        for name, entry in _components(state).items():
            try:
                proc = psutil.Process(entry["pid"])
                if abs(proc.create_time() - entry["create_time"]) < 1.0 and _alive(proc):
                    tracked[name] = proc
            except psutil.Error:
                continue
        return tracked

    def _print_endpoints(self, status: StackStatus | None = None) -> None:
        config = self.config
        airflow_url = status.airflow_url if status else config.airflow_url
        mlflow_url = status.mlflow_url if status else config.mlflow_url
        password = read_admin_password(config.passwords_file)
        login = f"login {ADMIN_USER} / {password}" if password else "no admin password yet"
        self._echo(f"Airflow  {airflow_url}  ({login}; {_rel(config.passwords_file)})")
        self._echo(f"MLflow   {mlflow_url}")
        if config.spark_remote:
            self._echo(f"Spark    {config.spark_remote} (Spark Connect; the Spark steps' sessions)")
        if config.warm_runner:
            self._echo(f"steps    {_rel(config.warm_socket)} (warm runner: each step a fork of preloaded libraries)")
        self._echo(f"lake     {config.lake_root}")
        self._echo(f"logs     {_rel(config.log_dir)}/*.log, {_rel(config.log_file('mlflow'))}")


def get_admin_credentials(config: StackConfig | None = None, timeout: float = 0.0) -> tuple[str, str]:
    """(user, password) of the Airflow admin, read from SimpleAuthManager's generated file.

    The API server writes the file when it first starts; `timeout` waits for it.
    """
    config = config or StackConfig.local()
    deadline = time.monotonic() + timeout
    while True:
        password = read_admin_password(config.passwords_file)
        if password:
            return ADMIN_USER, password
        if time.monotonic() >= deadline:
            raise StackError(
                f"no password for {ADMIN_USER!r} in {config.passwords_file}; "
                "is the stack started? (python -m scripts.stack start)"
            )
        time.sleep(0.5)


def _components(state: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    return (state or {}).get("components") or {}


def _component_of(waiting: str) -> str:
    return {"metadatabase": "api-server", "dag_processor": "dag-processor", "admin password file": "api-server"}.get(
        waiting, waiting
    )


def _flatten(waves: tuple[tuple[str, ...], ...]) -> list[str]:
    return [name for wave in waves for name in wave]


def _sid(proc: psutil.Process) -> int | None:
    try:
        return os.getsid(proc.pid)
    except OSError:
        return None


def _under(proc: psutil.Process, leaders: set[int]) -> bool:
    """In the session of one of `leaders` (components lead theirs), or a descendant of one: the
    warm runner's steps lead sessions of their own, yet stop with the runner, not before it."""
    if _sid(proc) in leaders:
        return True
    try:
        return any(parent.pid in leaders for parent in proc.parents())
    except psutil.Error:
        return False


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def _send(proc: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)


def _pss(proc: psutil.Process) -> int:
    try:
        return proc.memory_full_info().pss
    except (psutil.Error, AttributeError):
        return 0


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start Airflow and MLflow in the background and wait until healthy")
    start.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for health (default 300)")
    stop = commands.add_parser("stop", help="stop every process of the stack")
    stop.add_argument("--grace", type=float, default=30.0, help="seconds before SIGTERM/SIGKILL (default 30)")
    commands.add_parser("status", help="what runs and where")
    args = parser.parse_args(argv)

    try:
        config = StackConfig.local()
    except Exception as exc:  # noqa: BLE001 - broken settings must not keep `make stop` from stopping
        if args.command == "start":
            raise
        print(f"warning: settings not loaded ({exc}); using the default stack location", file=sys.stderr)
        config = StackConfig(REPO_ROOT / ".airflow", REPO_ROOT / ".mlflow", str(REPO_ROOT / "data" / "lake"))
    stack = Stack(config)
    try:
        if args.command == "start":
            stack.start(timeout=args.timeout)
            return 0
        if args.command == "stop":
            return 1 if stack.stop(grace=args.grace) else 0
        status = stack.print_status()
        if not any(c.running for c in status.components.values()):
            return 3
        return 0 if status.healthy else 1
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
