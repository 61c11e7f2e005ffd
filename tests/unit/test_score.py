"""jobs.score: real feature rows, a real registered model (jobs.train's), real Spark and spark_udf."""
from __future__ import annotations

import datetime as dt
import logging
import shutil

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from jobs.features import features_key
from jobs.lake import Lake
from jobs.score import (ChampionUnusable, NothingToScore, PREDICTED, PROBABILITY, dates_ahead, main,
                        predictions_key, score_ahead, score_catch_up, score_dates, scoring_tasks)
from tests.unit.conftest import settings_with

KEY = ["year", "month", "day", "carrier", "flight", "origin"]


@pytest.fixture
def served(served_model, tmp_path):
    """The served model's lake, copied for this test."""
    root = tmp_path / "lake"
    shutil.copytree(served_model["lake_root"], root)
    return {**served_model, "lake": Lake(str(root))}


def test_scores_a_day_stamped_with_the_champion_and_equal_to_the_pyfunc(served, spark):
    lake, settings = served["lake"], served["settings"]
    [result] = score_dates(lake, dt.date(2013, 1, 7), settings=settings, spark=spark)
    predictions = lake.read_partition(predictions_key("2013-01-07"))
    features = lake.read_partition(features_key("2013-01-07"))

    assert result.status == "written" and result.rows == len(features) == len(predictions)
    assert set(predictions.columns) == {*KEY, "flight_date", PROBABILITY, PREDICTED, "model_version",
                                        "model_run_id", "scored_at"}
    assert set(predictions["model_version"]) == {served["version"]}
    assert set(predictions["model_run_id"]) == {served["run_id"]}
    assert (predictions[PREDICTED] == (predictions[PROBABILITY] >= settings.training.decision_threshold)).all()
    assert predictions[PROBABILITY].between(0, 1).all()
    manifest = lake.read_manifest(predictions_key("2013-01-07"))["metadata"]
    assert manifest["model_uri"] == f"models:/flight_delay/{served['version']}"
    assert manifest["features"]["write_id"] == lake.read_manifest(features_key("2013-01-07"))["write_id"]

    # No train/serve skew: Spark's scores are the in-process pyfunc's on the same rows.
    mlflow.set_tracking_uri(served["tracking_uri"])
    expected = mlflow.pyfunc.load_model(f"models:/flight_delay/{served['version']}").predict(features)
    joined = features[KEY].assign(expected=np.asarray(expected)).merge(predictions, on=KEY)
    assert len(joined) == len(features)
    np.testing.assert_allclose(joined["expected"], joined[PROBABILITY], atol=1e-6)


def test_a_rerun_replaces_the_partition(served, spark):
    lake, settings = served["lake"], served["settings"]
    score_dates(lake, dt.date(2013, 1, 8), settings=settings, spark=spark)
    first = lake.read_manifest(predictions_key("2013-01-08"))
    score_dates(lake, dt.date(2013, 1, 8), settings=settings, spark=spark)
    second = lake.read_manifest(predictions_key("2013-01-08"))
    assert second["write_id"] != first["write_id"] and second["rows"] == first["rows"]
    files = [k for k in lake.list(predictions_key("2013-01-08")) if k.endswith(".parquet")]
    assert len(files) == 1, "the old file is gone: a rerun replaces, never appends"


def test_a_range_scores_the_dates_with_features_and_names_the_others(served, spark, caplog):
    lake, settings = served["lake"], served["settings"]
    results = score_dates(lake, dt.date(2013, 1, 7), 3, settings=settings, spark=spark)  # Jan 9 has no features
    assert [r.ds for r in results] == ["2013-01-07", "2013-01-08"]
    assert "no features partition" in caplog.text and "date=2013-01-09" in caplog.text
    assert not lake.partition_exists(predictions_key("2013-01-09"))


def test_ahead_of_rescores_the_days_after_the_monitored_day_that_started_a_training(served, spark):
    """A catch-up scored Jan 7-8 before monitoring judged Jan 6; monitoring of Jan 6 started a training that
    promoted: `--ahead-of 2013-01-06` rescores Jan 7-8 with the new champion; a day monitoring has judged since
    keeps its scores."""
    lake, settings = served["lake"], served["settings"]
    lake.write_json("reports/drift/2013-01-06/summary.json", {"ds": "2013-01-06"})
    lake.write_json("reports/drift/2013-01-05/summary.json", {"ds": "2013-01-05"})
    lake.write_json("reports/drift/2013-01-07/data_drift.json", {})  # Jan 7's monitoring has not finished
    assert dates_ahead(lake, dt.date(2013, 1, 6)) == [dt.date(2013, 1, 7), dt.date(2013, 1, 8)]
    assert dates_ahead(lake, dt.date(2013, 1, 7)) == [dt.date(2013, 1, 8)]
    results = score_ahead(lake, dt.date(2013, 1, 6), settings=settings, spark=spark)
    assert [r.ds for r in results] == ["2013-01-07", "2013-01-08"]
    assert {r.model_version for r in results} == {served["version"]}
    lake.write_json("reports/drift/2013-01-08/summary.json", {"ds": "2013-01-08"})
    with pytest.raises(NothingToScore, match="no day after 2013-01-06 .*last monitored: 2013-01-08"):
        score_ahead(lake, dt.date(2013, 1, 6), settings=settings, spark=spark)


def test_catch_up_scores_the_later_days_never_scored_and_their_runs_then_skip(served, spark, caplog):
    """A catch-up: features of Jan 6-8 are there, none scored. The run of Jan 6 scores all three in one pass;
    the runs of Jan 7 and 8 find theirs scored by the champion on their features and skip, naming why. A
    rebuilt features partition is rescored by its own run; a day already scored is never rescored ahead."""
    caplog.set_level(logging.INFO, logger="jobs.score")
    lake, settings = served["lake"], served["settings"]
    for ds in ("2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04", "2013-01-05"):
        score_dates(lake, dt.date.fromisoformat(ds), settings=settings, spark=spark)
    results = score_catch_up(lake, dt.date(2013, 1, 6), settings=settings, spark=spark)
    assert [r.ds for r in results] == ["2013-01-06", "2013-01-07", "2013-01-08"]
    assert {r.model_version for r in results} == {served["version"]}
    assert "2 date(s) after 2013-01-06 have features and no predictions yet (2013-01-07..2013-01-08)" in caplog.text
    written = {ds: lake.read_manifest(predictions_key(ds))["write_id"] for ds in ("2013-01-07", "2013-01-08")}
    for ds in ("2013-01-07", "2013-01-08"):
        with pytest.raises(NothingToScore, match=f"predictions of {ds} already come from version "
                                                 f"{served['version']} on its features write .*no later date waits"):
            score_catch_up(lake, dt.date.fromisoformat(ds), settings=settings, spark=spark)
    assert {ds: lake.read_manifest(predictions_key(ds))["write_id"] for ds in written} == written

    # Jan 7's features rebuilt (a new write): its run rescores it, and leaves Jan 8 alone (already served).
    lake.write_partition(features_key("2013-01-07"), lake.read_partition(features_key("2013-01-07")),
                         lake.read_manifest(features_key("2013-01-07"))["metadata"])
    [again] = score_catch_up(lake, dt.date(2013, 1, 7), settings=settings, spark=spark)
    assert again.ds == "2013-01-07"
    assert lake.read_manifest(predictions_key("2013-01-07"))["write_id"] != written["2013-01-07"]
    assert lake.read_manifest(predictions_key("2013-01-08"))["write_id"] == written["2013-01-08"]


def test_catch_up_through_the_cli_names_what_it_wrote(served, monkeypatch, capsys):
    """`--catch-up` end to end through main(): STEP_RESULTs for the run's day and the day caught up, then a skip."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served["tracking_uri"])
    monkeypatch.setenv("LAKE_ROOT", served["lake"].root)
    for day in range(1, 7):  # Jan 1-6 served already: Jan 7 and 8 are left
        lake = served["lake"]
        lake.write_partition(predictions_key(f"2013-01-0{day}"), lake.read_partition(features_key("2013-01-01")).head(1),
                             {"model_version": "0"})
    assert main(["--ds", "2013-01-07", "--catch-up"]) == 0
    out = capsys.readouterr().out
    assert [line.split('"ds": "')[1][:10] for line in out.splitlines() if line.startswith("STEP_RESULT")] == [
        "2013-01-07", "2013-01-08"]
    assert main(["--ds", "2013-01-08", "--catch-up"]) == 4
    assert capsys.readouterr().out.startswith("SKIPPED the predictions of 2013-01-08 already come from version")


def test_ahead_and_a_date_are_one_or_the_other(capsys):
    for argv in ([], ["--ahead-of", "2013-01-06", "--ds", "2013-01-07"], ["--ahead-of", "2013-01-06", "--days", "3"],
                 ["--ds", "2013-01-06", "--days", "3", "--catch-up"], ["--ahead-of", "2013-01-06", "--catch-up"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2, argv
    err = capsys.readouterr().err
    assert "--days goes with --ds alone" in err and "--catch-up goes with --ds" in err


@pytest.mark.parametrize(("rows", "per_task", "tasks"), [(0, 1000, 1), (900, 1000, 1), (1000, 1000, 1),
                                                         (1001, 1000, 2), (1_000_000, 250_000, 4)])
def test_scoring_tasks_hold_at_most_rows_per_task(rows, per_task, tasks):
    assert scoring_tasks(rows, per_task) == tasks


def test_scores_are_the_same_in_one_task_or_several(served, spark, caplog):
    caplog.set_level(logging.INFO, logger="jobs.score")
    lake, settings = served["lake"], served["settings"]
    score_dates(lake, dt.date(2013, 1, 7), 2, settings=settings, spark=spark)
    one = {ds: lake.read_partition(predictions_key(ds)) for ds in ("2013-01-07", "2013-01-08")}
    rows = sum(len(frame) for frame in one.values())
    assert f"scoring {rows} rows of 2 dates in 1 Spark task(s)" in caplog.text
    several = settings.model_copy(update={"scoring": settings.scoring.model_copy(update={"rows_per_task": 1000})})
    score_dates(lake, dt.date(2013, 1, 7), 2, settings=several, spark=spark)
    assert f"in {scoring_tasks(rows, 1000)} Spark task(s)" in caplog.text and rows > 1000
    for ds, frame in one.items():
        again = lake.read_partition(predictions_key(ds))
        merged = frame[[*KEY, PROBABILITY]].merge(again[[*KEY, PROBABILITY]], on=KEY, suffixes=("", "_again"))
        assert len(merged) == len(frame) == len(again)
        keys = list(again[KEY].itertuples(index=False, name=None))
        assert keys == sorted(keys), f"predictions of {ds} are not in flight-key order"
        np.testing.assert_allclose(merged[PROBABILITY], merged[PROBABILITY + "_again"], atol=1e-9)


def test_no_features_is_a_skip_naming_the_partition(served, spark):
    with pytest.raises(NothingToScore, match=r"features/flights/date=2013-02-01"):
        score_dates(served["lake"], dt.date(2013, 2, 1), settings=served["settings"], spark=spark)


def test_no_champion_yet_is_a_skip_with_exit_4(served, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/empty.db")
    monkeypatch.setenv("LAKE_ROOT", served["lake"].root)
    assert main(["--ds", "2013-01-07"]) == 4
    out = capsys.readouterr().out
    assert out.startswith("SKIPPED no flight_delay@champion yet")
    assert not served["lake"].partition_exists(predictions_key("2013-01-07"))


def test_a_champion_whose_version_was_deleted_is_rejected_naming_it(served_model, tmp_path, spark):
    """MLflow drops a deleted version's aliases: scoring must not mistake that for 'no champion yet'."""
    db = tmp_path / "mlflow.db"
    shutil.copy(served_model["tracking_uri"].removeprefix("sqlite:///"), db)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    client.delete_model_version("flight_delay", served_model["version"])
    settings = settings_with(uri, served_model["lake_root"])
    version = served_model["version"]
    with pytest.raises(ChampionUnusable, match=f"no champion alias although version {version} was made champion"):
        score_dates(Lake(served_model["lake_root"]), dt.date(2013, 1, 7), settings=settings, spark=spark)


def test_a_champion_whose_artifact_is_missing_is_rejected_naming_the_version(served_model, tmp_path, spark):
    db = tmp_path / "mlflow.db"
    shutil.copy(served_model["tracking_uri"].removeprefix("sqlite:///"), db)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    broken = client.create_model_version("flight_delay", source=str(tmp_path / "gone"), run_id=served_model["run_id"])
    client.set_registered_model_alias("flight_delay", "champion", broken.version)
    settings = settings_with(uri, served_model["lake_root"])
    with pytest.raises(ChampionUnusable, match=f"version {broken.version} .*cannot be loaded"):
        score_dates(Lake(served_model["lake_root"]), dt.date(2013, 1, 7), settings=settings, spark=spark)
