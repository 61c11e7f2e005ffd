"""A real Airflow for DAG runs in tests: `dag.test()` against its own metadata DB and lake.

    runner = AirflowRunner(tmp_home, "sqlite:///.../airflow.db")   # migrates the DB
    state, tasks, output = runner.dags_test("flights_ingest", "2013-01-02")

Each run is a fresh interpreter (tests/integration/dag_test_runner.py), since Airflow
reads its configuration at import. `runner.last_result` keeps the run's full result,
Asset events included.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from jobs.lake import Lake

REPO_ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
RUN_DAG_TEST = Path(__file__).with_name("dag_test_runner.py")


def _airflow_env(home: Path, lake_root: Path, sql_conn: str) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        # The lake sensors' trigger (plugins/lake_triggers.py) is imported from the plugins folder, as the stack's.
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_conn,
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # The dags folder on the path, as Airflow puts a DAG bundle's (the DAG files import `common`);
        # `jobs` is the installed package.
        "PYTHONPATH": str(REPO_ROOT / "dags"),
        "PIPELINE_ENV": "local",
        "LAKE_ROOT": str(lake_root),
        # A feed that never lands fails the test in a minute, not after the local 10-minute timeout.
        "PIPELINE__SENSORS__TIMEOUT_S": "60",
        "PIPELINE__SENSORS__POKE_INTERVAL_S": "2",
    }


class AirflowRunner:
    """`airflow dags test` against its own metadata DB and lake."""

    def __init__(self, home: Path, sql_conn: str, **extra_env: str):
        self.home = home
        self.lake_root = home / "lake"
        self.env = {**_airflow_env(home, self.lake_root, sql_conn), **extra_env}
        self.last_result: dict[str, Any] = {}
        subprocess.run([AIRFLOW, "db", "migrate"], env=self.env, check=True, capture_output=True, timeout=300)

    @property
    def lake(self) -> Lake:
        return Lake(str(self.lake_root))

    def dags_test(self, dag_id: str, logical_date: str, conf: dict | None = None) -> tuple[str, dict, str]:
        """One DAG run through Airflow's dag.test(): (run state, {task_id: state}, output)."""
        command = [sys.executable, str(RUN_DAG_TEST), dag_id, logical_date]
        if conf is not None:
            command.append(json.dumps(conf))
        proc = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=600)
        output = proc.stdout + proc.stderr
        lines = [line for line in proc.stdout.splitlines() if line.startswith("DAG_TEST_RESULT ")]
        assert lines, f"dag.test() did not finish:\n{output[-4000:]}"
        result = json.loads(lines[-1].split(" ", 1)[1])
        self.last_result = result
        return result["state"], result["tasks"], output

    def _python(self, code: str) -> str:
        proc = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of `dag_id` in this Airflow's metadata DB: run_id, state, run_type, conf (oldest first)."""
        out = self._python(
            "import json\n"
            "from airflow.models.dagrun import DagRun\n"
            "from airflow.utils.session import create_session\n"
            "with create_session() as s:\n"
            f"    runs = s.query(DagRun).filter(DagRun.dag_id == {dag_id!r}).order_by(DagRun.id).all()\n"
            "    print(json.dumps([{'run_id': r.run_id, 'state': str(getattr(r.state, 'value', r.state)),\n"
            "                       'run_type': str(getattr(r.run_type, 'value', r.run_type)), 'conf': r.conf}\n"
            "                      for r in runs], default=str))\n")
        return json.loads(out.strip().splitlines()[-1])

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> None:
        """Mark a run as a finished scheduler would (dag.test() does not run what another DAG triggered)."""
        self._python(
            "from airflow.models.dagrun import DagRun\n"
            "from airflow.utils.session import create_session\n"
            "with create_session() as s:\n"
            f"    run = s.query(DagRun).filter(DagRun.dag_id == {dag_id!r}, DagRun.run_id == {run_id!r}).one()\n"
            f"    run.state = {state!r}\n")
