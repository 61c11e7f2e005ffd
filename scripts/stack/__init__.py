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

Why not a process manager (supervisord, weighed for issue 15): it would take over the spawning
(`stopsignal=INT`, `stopasgroup`, `priority` for the stop order, `stopwaitsecs` for the grace) and
the state file, about 90 lines of `control` and `state`. It would not take over what most of this
code is for: the one-shot migration between MLflow/Spark and the Airflow components, the health
waits, and the leak check and orphan hunt (a task's subprocess in a session of its own escapes
`killasgroup`, which signals one process group). It adds a daemon to start, wait for and shut
down, its config to render per stack (the tests run several on free ports), and a second place to
read when a stack will not stop. About even in lines, one more moving part: kept our own.

Modules: `config` (StackConfig and each component's command), `health`, `processes` (which are the
stack's, how each is signalled), `state` (the state file and its lock), `control` (Stack: start,
status, stop), `__main__` (the CLI).

`StackConfig` holds everything that differs between stacks (homes, ports, database URLs,
lake, DAG and plugin folders); `Stack(config)` starts, inspects and stops one.
tests/integration/stack.py builds a throwaway config on free ports and reuses all of this.
"""
from __future__ import annotations

from scripts.stack.config import (
    ADMIN_USER, AIRFLOW_COMPONENTS, REPO_ROOT, SPARK_CONNECT, STACK_MARK, WARM_RUNNER, StackConfig, spark_connect_command,
)
from scripts.stack.control import Stack, StackError, get_admin_credentials
from scripts.stack.health import (
    ComponentStatus, StackStatus, airflow_health, mlflow_healthy, port_free, port_open, read_admin_password, tail,
    unhealthy_airflow_parts,
)

__all__ = [
    "ADMIN_USER", "AIRFLOW_COMPONENTS", "REPO_ROOT", "SPARK_CONNECT", "STACK_MARK", "WARM_RUNNER", "ComponentStatus",
    "Stack", "StackConfig", "StackError", "StackStatus", "airflow_health", "get_admin_credentials", "mlflow_healthy",
    "port_free", "port_open", "read_admin_password", "spark_connect_command", "tail", "unhealthy_airflow_parts",
]
