"""delay_model_training and delay_model_rollback through a real Airflow (dag.test()) and a real `mlflow server`.

Twelve real days (January 2013) in the raw zone are turned into features by Spark; then,
as the issue asks:
1. a first run registers a champion, with the expected tags, aliases and model card;
2. a deliberately worse run (a two-day window, one epoch) is rejected by the gate: it stays
   `challenger` and the champion is unchanged;
3. `delay_model_rollback` cannot roll back without a `previous`; after an operator promotes
   the challenger by hand, one trigger moves `champion` back, recording why;
4. a champion whose artifact is missing is reported by the evaluation, and the gate follows
   `gate.without_champion` (here: reject).
MLflow runs on SQLite here; the registry steps run again against an MLflow server on
PostgreSQL when 127.0.0.1:5432 answers. The gate's floor is lowered for twelve days of data (the policy is
settings: PIPELINE__GATE__AUC_FLOOR), nothing else is changed.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from jobs.evaluate import model_card_key
from jobs.features import compute_features
from jobs.settings import load_settings
from scripts.replay import SHORT_WINDOW_ENV
from tests.integration.airflow_test import AirflowRunner
from tests.integration.stack import mlflow_server, postgres_database, postgres_skip_reason
from tests.realdata import write_raw_days

pytestmark = pytest.mark.integration

FIRST, DAYS = dt.date(2013, 1, 1), 12
MODEL = "flight_delay"


@pytest.fixture(scope="module")
def lake_with_features(tmp_path_factory):
    """Raw partitions (as ingestion writes them; its GX gate is tested in test_ingest_dag.py) and
    features (through Spark) of Jan 1-12, built once and copied per test."""
    from jobs.lake import Lake

    root = tmp_path_factory.mktemp("training_lake") / "lake"
    lake = Lake(str(root))
    write_raw_days(lake, FIRST, DAYS)
    compute_features(lake, FIRST, DAYS, settings=load_settings("local"))
    return root


def _runner(home, lake_root, tracking_uri) -> AirflowRunner:
    import shutil

    runner = AirflowRunner(home, f"sqlite:///{home}/airflow.db", MLFLOW_TRACKING_URI=tracking_uri,
                           PIPELINE__AIRFLOW__RETRIES="0", **SHORT_WINDOW_ENV)
    shutil.copytree(lake_root, runner.lake_root)
    return runner


def _aliases(client: MlflowClient) -> dict[str, str]:
    return {alias: version for alias, version in client.get_registered_model(MODEL).aliases.items()}


def _train(runner: AirflowRunner, logical_date: str, conf: dict) -> tuple[str, dict, str]:
    return runner.dags_test("delay_model_training", logical_date, conf)


def _training_cycle(runner: AirflowRunner, tracking_uri: str, artifacts_dir=None) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)

    # 1. The first model (the HGB family: strong on twelve days) becomes champion.
    state, tasks, out = _train(runner, "2013-01-14", {"family": "sklearn_hgb", "reason": "first model"})
    assert state == "success", out[-5000:]
    assert tasks["promote"]["state"] == "success" and tasks["not_promoted"]["state"] == "skipped"
    assert tasks["approve"]["state"] == "skipped"
    assert _aliases(client) == {"champion": "1", "challenger": "1"}
    version = client.get_model_version(MODEL, "1")
    assert version.tags["gate_passed"] == "true" and version.tags["reason"] == "first model"
    run = client.get_run(version.run_id)
    assert run.data.tags["airflow.dag_id"] == "delay_model_training" and run.data.tags["role"] == "candidate"
    assert run.data.tags["window.holdout_end"] == "2013-01-12" and run.data.tags["window.train_start"] == "2013-01-01"
    assert run.data.metrics["holdout_roc_auc"] > 0.55 and "gate.reasons" in run.data.tags
    assert run.inputs.dataset_inputs, "dataset lineage logged with mlflow.log_input"
    baseline = client.get_run(run.data.tags["baseline_run_id"])
    assert baseline.data.tags["role"] == "baseline" and baseline.info.experiment_id == run.info.experiment_id
    card = json.loads(runner.lake.read_bytes(f"{model_card_key(MODEL, '1')}/model_card.json"))
    assert card["decision"]["passed"] and card["models"]["candidate"]["metrics"]["roc_auc"] > 0.55

    # 2. A deliberately worse candidate: two days of training, one epoch. Rejected; champion unchanged.
    state, tasks, out = _train(runner, "2013-01-15", {
        "family": "torch_mlp", "epochs": 1, "train_start": "2013-01-06", "train_end": "2013-01-09",
        "reason": "worse on purpose"})
    assert state == "success", out[-5000:]
    assert tasks["not_promoted"]["state"] == "success" and tasks["promote"]["state"] == "skipped"
    assert _aliases(client) == {"champion": "1", "challenger": "2"}
    rejected = client.get_model_version(MODEL, "2")
    assert rejected.tags["gate_passed"] == "false" and rejected.tags["gate_reasons"]
    assert "gate: " in out and rejected.tags["gate_reasons"].split(" | ")[0] in out, "the reasons are in the task log"

    # 3. No previous yet: the rollback fails and changes nothing.
    state, tasks, out = runner.dags_test("delay_model_rollback", "2013-01-15", {"reason": "testing rollback"})
    assert state == "failed" and "nothing to roll back to" in out
    assert _aliases(client)["champion"] == "1"

    # An operator promotes the rejected challenger by hand (jobs.registry, what the promote task runs) ...
    forced = subprocess.run([sys.executable, "-m", "jobs.registry", "promote", "--version", "2", "--reason",
                             "operator override"], env=runner.env, capture_output=True, text=True, timeout=120)
    assert forced.returncode == 0, forced.stderr
    assert _aliases(client) == {"champion": "2", "challenger": "2", "previous": "1"}
    # ... and one trigger of delay_model_rollback puts the previous champion back.
    state, tasks, out = runner.dags_test("delay_model_rollback", "2013-01-16", {"reason": "bad predictions"})
    assert state == "success", out[-4000:]
    assert _aliases(client) == {"champion": "1", "challenger": "2", "previous": "2"}
    assert "bad predictions" in client.get_model_version(MODEL, "2").tags["rollback_reason"]

    # 4. The champion's artifact goes missing: evaluation reports it, and the policy decides.
    if artifacts_dir is not None:
        import shutil

        model_id = client.get_model_version(MODEL, "1").source.rsplit("/", 1)[-1]  # models:/m-...
        (gone,) = [p for p in artifacts_dir.rglob(model_id) if p.is_dir()]
        shutil.rmtree(gone)
        evaluated = subprocess.run([sys.executable, "-m", "jobs.evaluate", "--version", "2"],
                                   env={**runner.env, "PIPELINE__GATE__WITHOUT_CHAMPION": "reject"},
                                   capture_output=True, text=True, timeout=300)
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        result = json.loads(evaluated.stdout.split("STEP_RESULT ", 1)[1].splitlines()[0])
        assert not result["passed"]
        assert any("champion version 1 could not be scored" in r for r in result["reasons"]), result["reasons"]
        assert _aliases(client)["champion"] == "1", "evaluation never moves an alias"


def test_training_cycle_with_mlflow_on_sqlite(tmp_path, lake_with_features):
    with mlflow_server(tmp_path / "mlflow") as url:
        _training_cycle(_runner(tmp_path / "airflow", lake_with_features, url), url, tmp_path / "mlflow" / "artifacts")


@pytest.mark.postgres
def test_registry_aliases_with_mlflow_on_postgres(tmp_path):
    """The registry steps (promote, rollback: the CLI the DAGs run) against an MLflow server on PostgreSQL."""
    import os

    reason = postgres_skip_reason()
    if reason:
        pytest.skip(reason)
    with postgres_database(prefix="mlflow_registry") as db, mlflow_server(tmp_path / "mlflow", backend_uri=db) as url:
        client = MlflowClient(tracking_uri=url)
        client.create_registered_model(MODEL)
        for _ in range(2):
            run = client.create_run("0")
            client.create_model_version(MODEL, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        env = {**os.environ, "MLFLOW_TRACKING_URI": url, "PIPELINE_ENV": "local"}

        def registry(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "jobs.registry", *args], env=env, capture_output=True,
                                  text=True, timeout=120)

        assert registry("promote", "--version", "1", "--reason", "first").returncode == 0
        assert registry("promote", "--version", "2", "--reason", "better").returncode == 0
        assert _aliases(client) == {"champion": "2", "previous": "1"}
        back = registry("rollback", "--reason", "bad predictions")
        assert back.returncode == 0, back.stderr
        assert _aliases(client) == {"champion": "1", "previous": "2"}
        assert client.get_model_version(MODEL, "2").tags["rollback_reason"] == "bad predictions"
        # The versions live in PostgreSQL.
        database = db.rsplit("/", 1)[1]
        count = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-tAc",
                                "select count(*) from model_versions"], capture_output=True, text=True, check=True)
        assert count.stdout.strip() == "2"


def test_a_bad_request_fails_before_anything_runs(tmp_path, lake_with_features):
    runner = _runner(tmp_path / "airflow", lake_with_features, "http://127.0.0.1:9")
    state, tasks, out = _train(runner, "2013-01-14", {"train_start": "2013-01-10", "train_end": "2013-01-05"})
    assert state == "failed" and tasks["check_request"]["state"] == "failed"
    assert "training window ends (2013-01-05) before it starts (2013-01-10)" in out
    assert tasks["build_training_set"]["state"] == "upstream_failed"
