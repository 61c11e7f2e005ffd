"""What differs between stacks (homes, ports, databases, lake, folders) and the command line and environment of each component."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jobs.warm import WARM_SOCKET_ENV

# The OpenLineage namespace of this pipeline's jobs (DAGs and tasks).
OPENLINEAGE_NAMESPACE = "flight_delay_pipeline"

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_MARK = "PIPELINE_STACK_HOME"
SQLITE_BUSY_TIMEOUT_S = 30
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
    # The server's JVM heap (--driver-memory). Scoring and the backtests hand their rows to it
    # as local relations; at 2g the year replay (its training beside its report's calendar
    # models, when the training set still went through Spark) failed with "Java heap space".
    # The heap is reserved as it is used, not at start.
    spark_connect_memory: str = "4g"
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
        WORKER_LOG_PORT / TRIGGER_LOG_PORT if set (a second stack on the machine needs all five), the
        Spark Connect server's heap from SPARK_CONNECT_MEMORY (Spark's notation, e.g. 6g)."""
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
            spark_connect_memory=environ.get("SPARK_CONNECT_MEMORY", cls.spark_connect_memory),
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
    def openlineage_dir(self) -> Path:
        """Where Airflow's OpenLineage provider writes each event (a file transport: one JSON file an event)."""
        return self.airflow_home / "openlineage"

    @property
    def passwords_file(self) -> Path:
        """Where SimpleAuthManager writes the generated admin password."""
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    @property
    def sql_alchemy_conn(self) -> str:
        # SQLite lets one writer in at a time; the scheduler, dag processor, triggerer and API
        # server all write. A writer waits up to SQLITE_BUSY_TIMEOUT_S for the lock (sqlite3's
        # default, 5 s, is exceeded on a loaded 2-core machine: "database is locked" -> HTTP 500).
        return self.airflow_db_url or (
            f"sqlite:///{self.airflow_home / 'airflow.db'}?timeout={SQLITE_BUSY_TIMEOUT_S}"
        )

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
                # Lineage of every task, as OpenLineage events in files here; a team's lineage server
                # (Marquez, DataHub, ...) gets them with an http transport instead (docs/deploy.md).
                "AIRFLOW__OPENLINEAGE__NAMESPACE": OPENLINEAGE_NAMESPACE,
                "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                    {"type": "file", "log_file_path": str(self.openlineage_dir / "event")}),
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


def spark_connect_command(host: str, port: int, driver_memory: str) -> list[str]:
    """The Spark Connect server of pyspark's own distribution, in the foreground, on loopback.

    It runs local[2] with the session properties the jobs fix (jobs/spark.py FIXED_CONF), so
    a client session behaves like an in-process one.
    """
    import pyspark

    from jobs.spark import FIXED_CONF, WORKER_CONF

    script = Path(pyspark.__file__).parent / "sbin" / "start-connect-server.sh"
    conf = {
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        **WORKER_CONF,
        **FIXED_CONF,
    }
    # Components are exec'ed by path (see EXEC_WITH_DEFAULT_SIGINT): bash by its full path.
    return [shutil.which("bash") or "/bin/bash", str(script), "--wait", "--master", "local[2]", "--driver-memory", driver_memory,
            *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}"))]


