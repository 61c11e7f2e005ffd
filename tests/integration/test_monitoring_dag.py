"""The loop closed through a real Airflow (dag.test()), a real `mlflow server`, real Spark and Evidently.

Twelve real January days are in the lake (raw and features). A champion is trained by jobs.train
on Jan 1-5 (holdout Jan 6-7) with its drift reference. Then, as the issue asks:
1. `flights_batch_scoring`, triggered by hand for a range, scores Jan 8-12 with the champion;
2. the features of Jan 11 and 12 are given a July: temperature, dewpoint and humidity shifted
   as the season shifts them (everything else untouched);
3. `delay_model_monitoring` for Jan 11 sees the drift and triggers `delay_model_training`
   with a conf that carries the reason, the evidence and the windows; that training runs
   with that conf and registers a new version;
4. `delay_model_monitoring` for Jan 12 sees the same drift, but that training holds it (a fresh
   champion's cooldown, or a rejected candidate's retry wait): no trigger, and the report and
   the log say why.
The policy is settings: drift for one day is enough here (PIPELINE__RETRAINING__DRIFT_DAYS=1),
the cooldown is three days, and three drifted columns of the eighteen watched make dataset
drift (a share of 0.15); nothing else is changed.
"""
from __future__ import annotations

import datetime as dt

import pytest
from mlflow import MlflowClient

from jobs.features import compute_features, features_key
from jobs.lake import Lake
from jobs.monitor import drift_report_key
from jobs.registry import promote
from jobs.settings import load_settings
from jobs.train import TrainRequest, train_candidate
from jobs.training_set import Windows
from tests.integration.airflow_test import AirflowRunner
from tests.integration.stack import mlflow_server
from tests.realdata import write_raw_days

pytestmark = pytest.mark.integration

FIRST, DAYS = dt.date(2013, 1, 1), 12
POLICY = {
    "PIPELINE__RETRAINING__DRIFT_DAYS": "1",
    "PIPELINE__RETRAINING__COOLDOWN_DAYS": "3",
    # Three weather columns of the eighteen watched move here (a real July moves the traffic mix too).
    "PIPELINE__MONITORING__DRIFT_SHARE": "0.15",
    "PIPELINE__TRAINING__HOLDOUT_DAYS": "2",
    "PIPELINE__TRAINING__VALIDATION_DAYS": "2",
    "PIPELINE__AIRFLOW__RETRIES": "0",
}


def give_a_july(lake: Lake, ds: str) -> None:
    """The season's weather on a January day: what drift looks like on this data."""
    features = lake.read_partition(features_key(ds))
    manifest = lake.read_manifest(features_key(ds))
    features["temp"] = features["temp"] + 45.0
    features["dewp"] = features["dewp"] + 40.0
    features["humid"] = (features["humid"] + 25.0).clip(upper=100.0)
    lake.write_partition(features_key(ds), features, manifest["metadata"])


def test_drift_triggers_one_retraining_and_the_cooldown_holds_the_next(tmp_path, monkeypatch):
    runner = None
    with mlflow_server(tmp_path / "mlflow") as url:
        runner = AirflowRunner(tmp_path / "airflow", f"sqlite:///{tmp_path}/airflow/airflow.db",
                               MLFLOW_TRACKING_URI=url, **POLICY)
        lake = runner.lake
        write_raw_days(lake, FIRST, DAYS)
        for name, value in {**POLICY, "MLFLOW_TRACKING_URI": url, "LAKE_ROOT": lake.root}.items():
            monkeypatch.setenv(name, value)
        settings = load_settings("local")
        compute_features(lake, FIRST, DAYS, settings=settings)
        champion = train_candidate(TrainRequest(Windows(FIRST, dt.date(2013, 1, 5), dt.date(2013, 1, 6),
                                                        dt.date(2013, 1, 7)), "sklearn_hgb", 1, 1024, 0.01, 13,
                                                False, "first model"), settings=settings, lake=lake)
        client = MlflowClient(url)
        promote(client, "flight_delay", champion["model_version"], "integration test")

        # 1. A manual rescoring of a range, through the scoring DAG.
        state, tasks, out = runner.dags_test("flights_batch_scoring", "2013-01-12",
                                             {"start": "2013-01-08", "end": "2013-01-12"})
        assert state == "success", out[-5000:]
        events = runner.last_result["asset_events"]
        assert sorted(e["partition_key"] for e in events) == [f"2013-01-{d:02d}" for d in range(8, 13)]
        assert {e["asset"] for e in events} == {"predictions_flight_delay"}
        scored = lake.read_manifest("predictions/flight_delay/date=2013-01-11")["metadata"]
        assert scored["model_version"] == champion["model_version"]

        # 2. A July on Jan 11 and 12.
        for ds in ("2013-01-11", "2013-01-12"):
            give_a_july(lake, ds)

        # 3. Monitoring of Jan 11 triggers a retraining with its reason.
        state, tasks, out = runner.dags_test("delay_model_monitoring", "2013-01-11T03:00:00")
        assert state == "success", out[-6000:]
        assert tasks["trigger_retraining"]["state"] == "success" and tasks["no_retraining"]["state"] == "skipped"
        summary = lake.read_json(drift_report_key("2013-01-11", "summary.json"))
        assert summary["data_drift"]["dataset_drift"]
        assert {"temp", "dewp", "humid"} <= set(summary["data_drift"]["drifted_columns"])
        assert summary["data_drift"]["columns"]["temp"]["score"] >= 1.0
        assert summary["performance"]["status"] == "measured"  # Jan 8-10 served and labelled
        assert lake.exists(drift_report_key("2013-01-11", "data_drift.html"))
        [triggered] = runner.dag_runs("delay_model_training")
        assert triggered["run_id"] == "monitoring__2013-01-11"
        conf = triggered["conf"]
        assert conf["reason"].startswith("delay_model_monitoring 2013-01-11: retrain: dataset drift")
        assert conf["holdout_end"] == "2013-01-10" and conf["holdout_start"] == "2013-01-09"
        assert conf["train_start"] == "2013-01-01" and conf["train_end"] == "2013-01-08"
        assert conf["evidence"]["dataset_drift"] is True
        assert "RETRAIN retrain: dataset drift" in out, "the decision is in the task log"
        monitoring_run = client.get_run(summary["mlflow_run_id"])
        assert monitoring_run.data.metrics["retrain_decision"] == 1.0

        # The training that monitoring asked for runs with that conf (the scheduler would run the
        # queued run; dag.test() runs it here) and registers a version trained through Jan 10.
        runner.set_run_state("delay_model_training", triggered["run_id"], "success")
        state, tasks, out = runner.dags_test("delay_model_training", "2013-01-11T06:00:00",
                                             {**conf, "family": "sklearn_hgb"})
        assert state == "success", out[-6000:]
        newest = max(client.search_model_versions("name = 'flight_delay'"), key=lambda v: int(v.version))
        assert newest.tags["reason"] == conf["reason"]
        assert client.get_run(newest.run_id).data.tags["window.holdout_end"] == "2013-01-10"

        # 4. Jan 12 drifts as much, but that training holds it: its version is a fresh champion (cooldown),
        # or it was rejected by the gate and new attempts wait (retry wait). No trigger either way.
        promoted = client.get_registered_model("flight_delay").aliases.get("champion") == newest.version
        state, tasks, out = runner.dags_test("delay_model_monitoring", "2013-01-12T03:00:00")
        assert state == "success", out[-6000:]
        assert tasks["no_retraining"]["state"] == "success" and tasks["trigger_retraining"]["state"] == "skipped"
        summary = lake.read_json(drift_report_key("2013-01-12", "summary.json"))
        assert summary["data_drift"]["dataset_drift"] and not summary["decision"]["retrain"]
        assert summary["decision"]["blocked_by"].startswith(
            f"cooldown: the champion v{newest.version} saw data up to 2013-01-10" if promoted else
            f"retry wait: candidate v{newest.version} (data up to 2013-01-10) was not promoted"), summary["decision"]
        assert "NO RETRAIN no retraining although" in out
        assert len(runner.dag_runs("delay_model_training")) == 2  # the triggered run and the one run here
