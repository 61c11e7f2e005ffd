"""The stack of `make demo` (scripts/stack.py), started for real on free ports.

One throwaway DAG (a BashOperator) in a temporary dags folder shows the whole loop: the
dag processor parses it, it is paused at creation, the REST API unpauses and triggers it
with conf and a logical date, the LocalExecutor runs it with the stack's environment, and
its log says so. Then stop must leave no process and no port behind. Once on SQLite with
the stack's Spark Connect server (a task sees its address; a client session runs a
query on it) and its warm step runner (a task sees its socket; a real step runs there with
the stack's settings; a step still running when the stack stops is stopped with it), once
on a fresh PostgreSQL database when 127.0.0.1:5432 answers.
"""
from __future__ import annotations

import datetime as dt
import stat
import subprocess
import textwrap
import threading
from pathlib import Path

import httpx
import pytest

from jobs.warm import run_step
from scripts.stack import WARM_RUNNER, airflow_health, mlflow_healthy, port_free, unhealthy_airflow_parts
from tests.integration.stack import POSTGRES_SERVER, IntegrationStack, postgres_skip_reason

pytestmark = pytest.mark.integration

DAG_ID = "stack_smoke"
SMOKE_DAG = textwrap.dedent(
    f'''
    """A DAG that only echoes: what the stack test triggers."""
    import pendulum
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG

    with DAG(
        dag_id="{DAG_ID}",
        schedule=None,
        start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
        catchup=False,
        tags=["test"],
    ):
        BashOperator(
            task_id="echo_ok",
            bash_command="echo \\"smoke: ok $PIPELINE_ENV {{{{ ds }}}} {{{{ dag_run.conf['word'] }}}} spark=${{PIPELINE__SPARK__REMOTE:-none}} warm=${{PIPELINE_WARM_SOCKET:-none}}\\"",
        )
    '''
)


def _smoke(tmp_path: Path, postgres_server: str | None = None, spark_connect: bool = False,
           warm_runner: bool = False) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(SMOKE_DAG)
    plugins = tmp_path / "plugins"  # the stack, not the repo's plugin, is under test here
    plugins.mkdir()
    stack = IntegrationStack(
        tmp_path / "stack", dags_folder=dags, plugins_folder=plugins, postgres_server=postgres_server,
        spark_connect=spark_connect, warm_runner=warm_runner,
    )
    with stack:
        config = stack.config
        assert not unhealthy_airflow_parts(airflow_health(config.airflow_url))
        assert mlflow_healthy(config.mlflow_url)

        # MLflow tracks into its own backend and proxies artifacts (mlflow-artifacts:/).
        created = httpx.post(
            f"{config.mlflow_url}/api/2.0/mlflow/experiments/create", json={"name": "stack-smoke"}
        ).raise_for_status().json()
        experiment = httpx.get(
            f"{config.mlflow_url}/api/2.0/mlflow/experiments/get",
            params={"experiment_id": created["experiment_id"]},
        ).raise_for_status().json()["experiment"]
        assert experiment["artifact_location"].startswith("mlflow-artifacts:")

        with stack.client() as client:
            assert client.version()["version"].startswith("3.")
            dag = client.wait_for_dags([DAG_ID], timeout=180)[DAG_ID]
            assert dag["is_paused"], "DAGs are paused at creation"
            assert [d["dag_id"] for d in client.list_dags()] == [DAG_ID]
            client.unpause(DAG_ID)

            run = client.trigger(DAG_ID, conf={"word": "hello"}, logical_date=dt.date(2013, 3, 1))
            final = client.wait_for_run(DAG_ID, run["dag_run_id"], timeout=300, poll=2)
            assert final["state"] == "success", final
            assert [r["dag_run_id"] for r in client.list_runs(DAG_ID)] == [run["dag_run_id"]]
            tasks = client.task_instances(DAG_ID, run["dag_run_id"])
            assert [(t["task_id"], t["state"]) for t in tasks] == [("echo_ok", "success")]
            log = client.task_log(DAG_ID, run["dag_run_id"], "echo_ok")
            spark = f"spark={config.spark_remote}" if spark_connect else "spark=none"
            warm = f"warm={config.warm_socket}" if warm_runner else "warm=none"
            assert f"smoke: ok local 2013-03-01 hello {spark} {warm}" in log, log

        if spark_connect:  # what a Spark step does with that address (jobs/spark.py)
            assert _spark_connect_answers(config.spark_remote)

        running_step: dict[str, object] = {}
        if warm_runner:
            running_step = _warm_runner_serves(stack)

        if postgres_server:  # the runs really live in the PostgreSQL database
            database = config.sql_alchemy_conn.rsplit("/", 1)[1]
            count = subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-tAc", "select count(*) from dag_run"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            assert count == "1"

        assert stack.stop() == []
        if warm_runner:  # the step that was still running was stopped with the stack
            running_step["thread"].join(timeout=30)
            assert running_step.get("code") == -15, running_step
            assert not config.warm_socket.exists()

    ports = (config.airflow_port, config.mlflow_port, config.worker_log_port, config.trigger_log_port,
             *([config.spark_connect_port] if spark_connect else []))
    assert all(port_free(config.host, port) for port in ports)
    ps = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True, check=True).stdout
    left = [
        line for line in ps.splitlines()
        if (str(tmp_path) in line or f"--port {config.mlflow_port}" in line
            or f"grpc.binding.port={config.spark_connect_port}" in line) and " Z" not in line
    ]
    assert left == []
    assert not config.state_file.exists()


def test_stack_on_sqlite_with_spark_connect_and_warm_runner(tmp_path):
    _smoke(tmp_path, spark_connect=True, warm_runner=True)


@pytest.mark.postgres
def test_stack_on_postgres(tmp_path):
    reason = postgres_skip_reason(POSTGRES_SERVER)
    if reason:
        pytest.skip(reason)
    _smoke(tmp_path, postgres_server=POSTGRES_SERVER)


def _spark_connect_answers(remote: str) -> bool:
    """A Spark Connect client session, from another process, runs a query on the stack's server."""
    code = (
        "from jobs.settings import SparkSettings; from jobs.spark import spark_session; "
        f"s = spark_session('stack-test', SparkSettings(remote='{remote}')); "
        "print('rows', s.range(10).count(), s.conf.get('spark.sql.session.timeZone'))"
    )
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert "rows 10 UTC" in out.stdout, out.stdout + out.stderr
    return True


def _warm_runner_serves(stack: IntegrationStack) -> dict[str, object]:
    """The stack's warm runner: reported, private, runs a real step with the stack's settings.

    Then starts a long step on it (a year of publishing) and returns {"thread", "code"} for
    the caller to check once the stack is stopped.
    """
    config = stack.config
    status = stack.stack.status()
    assert status.components[WARM_RUNNER].running and status.warm_runner_serving and status.healthy
    assert stat.S_IMODE(config.warm_socket.stat().st_mode) == 0o600
    repo = Path(__file__).resolve().parents[2]
    lines: list[str] = []
    code = run_step(config.warm_socket, "publish", ["--ds", "2013-01-01", "--feed", "schedule"], env=stack.env(),
                    cwd=repo, on_line=lines.append)
    assert code == 0, lines
    assert (Path(config.lake_root) / "landing" / "schedule" / "2013-01-01.csv").is_file(), "the stack's LAKE_ROOT"

    started = threading.Event()
    outcome: dict[str, object] = {}

    def publish_a_year() -> None:
        outcome["code"] = run_step(config.warm_socket, "publish", ["--ds", "2013-01-01", "--days", "365"],
                                   env=stack.env(), cwd=repo, on_line=lambda line: None,
                                   on_start=lambda pid: started.set())

    outcome["thread"] = threading.Thread(target=publish_a_year, daemon=True)
    outcome["thread"].start()
    assert started.wait(timeout=60), "the long step did not start"
    return outcome
