"""jobs.lineage on a lake the real steps wrote: from a prediction back to its model version, training set,
features write, raw partitions and landing files; a partition rewritten since is shown as replaced."""
from __future__ import annotations

import datetime as dt
import shutil

import pytest

from jobs.ingest import ingest_feed
from jobs.lake import Lake
from jobs.lineage import NoLineage, lineage, main
from jobs.score import predictions_key
from jobs.upstream.publish import publish
from tests.unit.conftest import settings_with

DAY = "2013-01-07"


@pytest.fixture
def lake_copy(health_data, tmp_path):
    shutil.copytree(health_data["lake"].root, tmp_path / "lake")
    lake = Lake(str(tmp_path / "lake"))
    return lake, settings_with(health_data["settings"].mlflow.tracking_uri, lake.root)


def test_a_days_predictions_lead_to_the_model_features_and_raw_partitions(lake_copy, health_data):
    lake, settings = lake_copy
    graph = lineage(lake, DAY, settings=settings)
    assert graph["predictions"]["state"] == "current"
    assert graph["model"]["version"] == health_data["version"] and graph["model"]["training_set"]
    assert all(part["state"] == "current" for part in graph["model"]["training_set_partitions"].values())
    assert graph["features"]["key"] == f"features/flights/date={DAY}" and graph["features"]["state"] == "current"
    keys = {raw["key"] for raw in graph["raw"]}
    assert {f"raw/schedule/date={DAY}", f"raw/weather/date={DAY}", "raw/flights/date=2013-01-06"} <= keys
    assert not any(key.endswith(f"flights/date={DAY}") for key in keys), "features never read their own day's outcomes"


def test_a_raw_partition_rewritten_since_is_replaced_and_leads_to_its_landing_file(lake_copy):
    lake, settings = lake_copy
    publish(lake, dt.date(2013, 1, 7), feeds=("schedule",), redeliver=True)
    ingest_feed(lake, "schedule", DAY, settings)
    graph = lineage(lake, DAY, settings=settings)
    [schedule] = [raw for raw in graph["raw"] if raw["key"] == f"raw/schedule/date={DAY}"]
    assert schedule["state"] == "replaced" and schedule["write_read"] != schedule["write_now"]
    assert schedule["landing"]["key"] == f"landing/schedule/{DAY}.csv" and schedule["landing"]["state"] == "current"


def test_one_flight_and_its_probability(lake_copy):
    lake, settings = lake_copy
    row = lake.read_partition(predictions_key(DAY)).iloc[0]
    graph = lineage(lake, DAY, flight=(row["carrier"], int(row["flight"]), row["origin"]), settings=settings)
    assert graph["flight"]["probability"] == pytest.approx(float(row["probability"]))
    with pytest.raises(NoLineage, match="no prediction for flight ZZ 1 from EWR"):
        lineage(lake, DAY, flight=("ZZ", 1, "EWR"), settings=settings)


def test_the_cli_prints_the_chain_and_names_a_missing_start(lake_copy, monkeypatch, capsys):
    lake, settings = lake_copy
    monkeypatch.setenv("LAKE_ROOT", lake.root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow.tracking_uri)
    assert main(["--ds", DAY]) == 0
    out = capsys.readouterr().out
    assert f"features/flights/date={DAY}" in out and "<- model flight_delay v" in out
    assert main(["--ds", "2013-03-01"]) == 3
    assert "no predictions for 2013-03-01" in capsys.readouterr().err


def test_the_openlineage_datasets_of_each_step_are_the_links_of_the_lineage(lake_copy, health_data):
    """What the step operators give Airflow's OpenLineage provider (jobs.lineage_events) for the results each
    step reports: its writes as outputs, what those writes read (their manifests) as inputs."""
    from jobs.features import features_key
    from jobs.lake import raw_key
    from jobs.lineage_events import dataset_of_uri, model_dataset, step_lineage

    lake, settings = lake_copy
    tracking, name = settings.mlflow.tracking_uri, settings.mlflow.model_name
    graph = lineage(lake, DAY, settings=settings)
    version = graph["model"]["version"]
    model = model_dataset(tracking, name, version)

    score = step_lineage([{"ds": DAY, "predictions_uri": lake.uri(predictions_key(DAY)), "model_version": version}],
                         lake, tracking, name)
    assert score.outputs == [dataset_of_uri(lake.uri(predictions_key(DAY)))]
    assert set(score.inputs) == {dataset_of_uri(lake.uri(features_key(DAY))), model}

    features = step_lineage([{"ds": DAY, "features_uri": lake.uri(features_key(DAY))}], lake, tracking, name)
    assert {dataset_of_uri(raw["uri"]) for raw in graph["raw"]} == set(features.inputs)

    publish(lake, dt.date(2013, 1, 7), feeds=("schedule",), redeliver=True)
    ingest_feed(lake, "schedule", DAY, settings)
    schedule = lake.uri(raw_key("schedule", DAY))
    ingest = step_lineage([{"feed": "schedule", "raw_uri": schedule}], lake, tracking, name)
    assert ingest.outputs == [dataset_of_uri(schedule)]
    assert ingest.inputs == [dataset_of_uri(lake.uri(f"landing/schedule/{DAY}.csv"))]

    set_id = graph["model"]["training_set"]
    train = step_lineage([{"run_id": graph["model"]["run_id"], "model_version": version, "set_id": set_id}],
                         lake, tracking, name)
    assert train.outputs == [model]
    assert set(train.inputs) == {dataset_of_uri(part["uri"]) for part in graph["model"]["training_set_partitions"].values()}

    holdout = graph["model"]["training_set_partitions"]["holdout"]["uri"]
    training_set = step_lineage([{"set_id": set_id, "holdout_uri": holdout}], lake, tracking, name)
    first = graph["model"]["window"]["holdout_start"]
    assert dataset_of_uri(lake.uri(features_key(first))) in training_set.inputs, training_set.inputs
    assert dataset_of_uri(lake.uri(raw_key("flights", first))) in training_set.inputs, "the labels: that day's outcomes"
    assert dataset_of_uri(lake.uri(raw_key("flights", "2013-01-06"))) in features.inputs


def test_dataset_names_follow_openlineage_naming():
    from jobs.lineage_events import dataset_of_uri, model_dataset

    assert dataset_of_uri("s3://lake/raw/flights/date=2013-01-01") == ("s3://lake", "raw/flights/date=2013-01-01")
    assert dataset_of_uri("/data/lake/raw/x") == ("file", "/data/lake/raw/x")
    assert dataset_of_uri("file:///data/lake/raw/x") == ("file", "/data/lake/raw/x")
    assert model_dataset("http://mlflow:5000", "flight_delay", 3) == ("mlflow://mlflow:5000",
                                                                      "models/flight_delay/versions/3")
