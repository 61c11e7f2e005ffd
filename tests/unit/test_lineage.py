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
