"""jobs.monitor on real features and served predictions of a real registered model, with real Evidently
and MLflow (SQLite): reports, served performance, pending labels, the decision and bad input."""
from __future__ import annotations

import datetime as dt
import shutil

import mlflow
import pytest
from mlflow import MlflowClient

from jobs.lake import Lake, raw_key
from jobs.monitor import NothingToMonitor, ReferenceMissing, drift_report_key, main, monitor_date
from jobs.score import score_dates
from tests.unit.conftest import settings_with


@pytest.fixture
def watched(served_model, tmp_path, spark):
    """A copy of the served lake and MLflow, with Jan 6-7 scored by the champion."""
    root, db = tmp_path / "lake", tmp_path / "mlflow.db"
    shutil.copytree(served_model["lake_root"], root)
    shutil.copy(served_model["tracking_uri"].removeprefix("sqlite:///"), db)
    uri = f"sqlite:///{db}"
    lake = Lake(str(root))
    settings = settings_with(uri, lake.root)
    score_dates(lake, dt.date(2013, 1, 6), 2, settings=settings, spark=spark)
    return {**served_model, "lake": lake, "tracking_uri": uri, "settings": settings}


def _settings(watched, **sections):
    return settings_with(watched["tracking_uri"], watched["lake"].root, **sections)


def test_a_day_is_monitored_with_reports_metrics_and_a_recorded_decision(watched):
    lake = watched["lake"]
    summary = monitor_date(lake, dt.date(2013, 1, 7), settings=watched["settings"])

    assert summary["model"]["version"] == watched["version"]
    data = summary["data_drift"]
    assert data["current_rows"] == lake.read_manifest("features/flights/date=2013-01-07")["rows"]
    assert data["reference_sample"]["of_rows"] > 0 and data["columns"]
    assert "month" not in data["columns"], "only the model's inputs are checked"
    assert set(data["columns"]) | set(data["empty_columns"]) == set(watched["settings"].monitoring.drift_columns)
    assert summary["prediction_drift"]["status"] == "measured"
    assert summary["prediction_drift"]["served_by_versions"] == [watched["version"]]

    performance = summary["performance"]
    assert performance["status"] == "measured"
    assert performance["days"]["2013-01-06"] == "labelled" and performance["days"]["2013-01-05"] == "no predictions"
    assert performance["latest_day"]["ds"] == "2013-01-06"
    assert 0.0 < performance["metrics"]["roc_auc"] < 1.0
    assert {"precision", "recall", "calibration_ece"} <= set(performance["metrics"])
    assert performance["labelled_rows"] + performance["cancelled"] == lake.read_manifest(
        "predictions/flight_delay/date=2013-01-06")["rows"]

    for name in ("data_drift.html", "data_drift.json", "prediction_drift.html", "prediction_drift.json", "summary.json"):
        assert lake.exists(drift_report_key("2013-01-07", name)), name
    assert lake.read_json(drift_report_key("2013-01-07", "summary.json"))["decision"] == summary["decision"]
    assert summary["decision"]["summary"], "the decision says why, trigger or not"

    client = MlflowClient(watched["tracking_uri"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["model_version"] == watched["version"]
    [point] = client.get_metric_history(run.info.run_id, "data_drift_share")
    assert point.step == 6  # days since 2013-01-01: the trend's x axis
    assert client.get_metric_history(run.info.run_id, "served_roc_auc")


def test_the_next_day_adds_a_point_to_the_same_run(watched):
    first = monitor_date(watched["lake"], dt.date(2013, 1, 7), settings=watched["settings"])
    second = monitor_date(watched["lake"], dt.date(2013, 1, 8), settings=watched["settings"])
    assert second["mlflow_run_id"] == first["mlflow_run_id"]
    steps = [m.step for m in MlflowClient(watched["tracking_uri"]).get_metric_history(first["mlflow_run_id"],
                                                                                     "data_drift_share")]
    assert sorted(steps) == [6, 7]
    # Jan 8 has no predictions (not scored): measured drift, prediction drift marked missing.
    assert second["prediction_drift"]["status"] == "missing"
    assert "predictions/flight_delay/date=2013-01-08" in second["prediction_drift"]["message"]


def test_labels_not_yet_arrived_are_pending_not_zero(watched):
    lake = watched["lake"]
    for ds in ("2013-01-06", "2013-01-07"):
        for key in lake.list(raw_key("flights", ds)):
            lake._store.delete([key])
    summary = monitor_date(lake, dt.date(2013, 1, 8), settings=watched["settings"])
    performance = summary["performance"]
    assert performance["status"] == "pending" and performance["labelled_rows"] == 0
    assert performance["days"]["2013-01-07"] == "pending"
    assert "metrics" not in performance
    assert "served AUC pending" in summary["decision"]["summary"]


def test_persistent_drift_outside_the_cooldown_asks_for_a_retrain_with_its_window(watched):
    settings = _settings(watched, retraining={"drift_days": 2, "cooldown_days": 0},
                         monitoring={"drift_share": 0.05, "numerical_threshold": 0.1})
    first = monitor_date(watched["lake"], dt.date(2013, 1, 7), settings=settings)
    assert first["data_drift"]["dataset_drift"] and not first["decision"]["retrain"]  # 1 of 2 days
    second = monitor_date(watched["lake"], dt.date(2013, 1, 8), settings=settings)
    assert second["decision"]["retrain"], second["decision"]
    conf = second["retrain_conf"]
    assert conf["reason"].startswith("delay_model_monitoring 2013-01-08: retrain: dataset drift on 2 consecutive")
    assert conf["holdout_end"] == "2013-01-07"  # the last labelled day
    assert conf["train_start"] == "2013-01-01" and conf["train_end"] < conf["holdout_start"]
    assert conf["evidence"]["previous_drift"] == [True]

    # Inside the cooldown (the model's data ends 2013-01-06) the same evidence does not trigger.
    cooling = _settings(watched, retraining={"drift_days": 2, "cooldown_days": 14}, monitoring={"drift_share": 0.05, "numerical_threshold": 0.1})
    blocked = monitor_date(watched["lake"], dt.date(2013, 1, 8), settings=cooling)
    assert not blocked["decision"]["retrain"] and "cooldown" in blocked["decision"]["blocked_by"]
    assert blocked["retrain_conf"] is None


def test_training_already_running_blocks_the_trigger(watched):
    settings = _settings(watched, retraining={"drift_days": 1, "cooldown_days": 0}, monitoring={"drift_share": 0.05, "numerical_threshold": 0.1})
    summary = monitor_date(watched["lake"], dt.date(2013, 1, 7), settings=settings, training_active=True)
    assert not summary["decision"]["retrain"]
    assert summary["decision"]["blocked_by"] == "a delay_model_training run is already queued or running"


def test_missing_features_skip_naming_the_partition(watched, monkeypatch, capsys):
    monkeypatch.setenv("LAKE_ROOT", watched["lake"].root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", watched["tracking_uri"])
    assert main(["--ds", "2013-01-20"]) == 4
    assert "SKIPPED no features partition" in capsys.readouterr().out
    with pytest.raises(NothingToMonitor, match="features/flights/date=2013-01-20"):
        monitor_date(watched["lake"], dt.date(2013, 1, 20), settings=watched["settings"])


def test_a_champion_without_reference_is_rejected_naming_the_version(watched):
    client = MlflowClient(watched["tracking_uri"])
    baseline = client.get_run(watched["run_id"]).data.tags["baseline_run_id"]  # HGB baseline: no reference stored
    mlflow.set_tracking_uri(watched["tracking_uri"])
    version = mlflow.register_model(f"runs:/{baseline}/model", "flight_delay").version
    client.set_registered_model_alias("flight_delay", "champion", version)
    with pytest.raises(ReferenceMissing, match=f"flight_delay version {version} .* has no drift reference"):
        monitor_date(watched["lake"], dt.date(2013, 1, 7), settings=watched["settings"])


def test_the_cli_takes_the_dags_count_of_active_trainings(monkeypatch, capsys, tmp_path):
    """The DAG renders `--active-trainings N` as the task starts; any N > 0 holds a new trigger back."""
    import jobs.monitor as monitor

    seen = []

    def fake_monitor_date(lake, ds, training_active=False):
        seen.append(training_active)
        raise monitor.NothingToMonitor("no features")

    monkeypatch.setenv("LAKE_ROOT", str(tmp_path))
    monkeypatch.setattr(monitor, "monitor_date", fake_monitor_date)
    for argv in (["--active-trainings", "0"], ["--active-trainings", "2"], ["--training-active"], []):
        assert main(["--ds", "2013-01-07", *argv]) == 4
    assert seen == [False, True, True, False]
    for bad in (["--active-trainings", "x"], ["--active-trainings", "-1"], ["--active-trainings", "1", "--training-active"]):
        with pytest.raises(SystemExit):
            main(["--ds", "2013-01-07", *bad])
    assert "is not a count of runs" in capsys.readouterr().err
