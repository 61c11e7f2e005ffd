"""Ten simultaneous triggers of `delay_model_training` through the REST API of a running stack (Airflow's
api-server, scheduler and LocalExecutor, a real `mlflow server`): the DAG allows one run at a time
(`max_active_runs=1`, "One run at a time." in its doc), so one run trains while the nine others wait
`queued`; when it is done the next one starts, alone. The test watches until the second run starts, then
fails the runs left (it does not wait for ten trainings).

The stack's metadata database is PostgreSQL when 127.0.0.1:5432 answers, and the ten POSTs are sent at once.
On SQLite (one writer at a time: concurrent POSTs get HTTP 500 "Database error") they are sent one after
another, all before the first run can start.
"""
from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.stack import POSTGRES_SERVER, IntegrationStack, postgres_skip_reason

pytestmark = pytest.mark.faults

DAG_ID = "delay_model_training"
CONF = {"train_start": "2013-01-01", "train_end": "2013-01-05", "holdout_start": "2013-01-06",
        "holdout_end": "2013-01-07", "family": "sklearn_hgb", "reason": "one of ten triggers"}
ENV = {"PIPELINE__TRAINING__VALIDATION_DAYS": "2", "PIPELINE__AIRFLOW__RETRIES": "0"}


@pytest.mark.timeout(2400)
def test_ten_simultaneous_trainings_run_one_at_a_time(served_copy, tmp_path):
    from mlflow import MlflowClient

    db = tmp_path / "registry.db"
    shutil.copy(served_copy["db"], db)
    postgres = postgres_skip_reason() is None
    with IntegrationStack(tmp_path / "stack", lake_root=served_copy["lake"].root, mlflow_backend_uri=f"sqlite:///{db}",
                          postgres_server=POSTGRES_SERVER if postgres else None, extra_env=ENV) as stack:
        client = stack.client()
        client.wait_for_dags([DAG_ID], timeout=300)
        client.unpause(DAG_ID)
        versions_before = len(MlflowClient(stack.config.mlflow_url).search_model_versions("name='flight_delay'"))

        def trigger(i: int) -> str:
            return stack.client().trigger(DAG_ID, conf=CONF, run_id=f"storm_{i:02d}")["dag_run_id"]

        with ThreadPoolExecutor(10 if postgres else 1) as pool:
            run_ids = set(pool.map(trigger, range(10)))
        assert len(run_ids) == 10

        def states() -> dict[str, str]:
            return {run["dag_run_id"]: run["state"] for run in client.list_runs(DAG_ID) if run["dag_run_id"] in run_ids}

        first, second, history = None, None, []
        deadline = time.monotonic() + 1500
        while second is None:
            assert time.monotonic() < deadline, history[-5:]
            now = states()
            history.append(now)
            running = [r for r, s in now.items() if s == "running"]
            done = [r for r, s in now.items() if s in ("success", "failed")]
            assert len(running) <= 1, f"{len(running)} trainings at once: {now}"
            assert len(done) <= 1, f"two runs finished before the watch saw the second start: {now}"
            if first is None and running:
                first = running[0]
                assert sorted(s for r, s in now.items() if r != first) == ["queued"] * 9, now
            if first and done:
                assert done == [first], now
                if running:
                    second = running[0]
                    assert list(now.values()).count("queued") == 8, now
            time.sleep(2)
        tasks = {t["task_id"]: t["state"] for t in client.task_instances(DAG_ID, first)}
        assert now[first] == "success" and tasks["train"] == "success", (now[first], tasks)
        versions = len(MlflowClient(stack.config.mlflow_url).search_model_versions("name='flight_delay'"))
        assert versions == versions_before + 1, "the waiting runs trained too"

        client.pause(DAG_ID)
        for run_id in run_ids - {first}:  # the stack's stop ends whatever is left
            client.set_run_state(DAG_ID, run_id, "failed")
