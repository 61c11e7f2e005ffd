"""jobs.backtest on real days with a real registered model (jobs.train's), real Spark and spark_udf, MLflow on SQLite:
the same numbers as what was served, metrics as sklearn computes them, outputs, a model trained on a window, bad input."""
from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from jobs.backtest import (
    BacktestRejected, BacktestRequest, backtest_key, backtest_predictions_key, compare, main, run_backtest,
)
from jobs.lake import Lake, raw_key
from jobs.registry import aliases
from jobs.score import PROBABILITY, predictions_key, score_dates
from tests.unit.conftest import settings_with

KEY = ["year", "month", "day", "carrier", "flight", "origin"]
MODEL = "flight_delay"


def _copy(served_model, folder):
    """The served lake and MLflow, copied into `folder`, with settings pointing at the copies."""
    root, db = folder / "lake", folder / "mlflow.db"
    shutil.copytree(served_model["lake_root"], root)
    shutil.copy(served_model["tracking_uri"].removeprefix("sqlite:///"), db)
    uri = f"sqlite:///{db}"
    lake = Lake(str(root))
    return lake, uri, settings_with(uri, lake.root, training={"validation_days": 2})


@pytest.fixture(scope="module")
def backtested(served_model, tmp_path_factory, spark):
    """Jan 6-7 served by the champion (jobs.score), then that version backtested over Jan 6-8 (Jan 8 not served)."""
    lake, uri, settings = _copy(served_model, tmp_path_factory.mktemp("backtest"))
    score_dates(lake, dt.date(2013, 1, 6), 2, settings=settings, spark=spark)
    summary = run_backtest(lake, {"version": served_model["version"], "start": "2013-01-06", "end": "2013-01-08"},
                           settings=settings, spark=spark)
    return {**served_model, "lake": lake, "tracking_uri": uri, "settings": settings, "summary": summary}


def test_backtesting_the_serving_version_gives_what_was_served(backtested):
    summary = backtested["summary"]
    assert summary["model"]["version"] == backtested["version"] and summary["model"]["run_id"] == backtested["run_id"]
    days = {day["ds"]: day for day in summary["days"]}
    assert list(days) == ["2013-01-06", "2013-01-07", "2013-01-08"]
    for ds in ("2013-01-06", "2013-01-07"):
        day = days[ds]
        assert day["served_status"] == "served" and day["served_versions"] == [backtested["version"]]
        assert day["served_missing"] == 0 and day["rows"] > 500
        # Same code, same features, same rows: the same numbers.
        for name in ("roc_auc", "pr_auc", "log_loss", "calibration_ece"):
            assert day["backtest"][name] == pytest.approx(day["served"][name], abs=1e-9), (ds, name)
    assert days["2013-01-08"]["served_status"] == "not served" and days["2013-01-08"]["served"] is None
    assert days["2013-01-08"]["backtest"]["roc_auc"] is not None
    totals = summary["totals"]
    assert totals["rows"] == sum(day["rows"] for day in days.values())
    assert totals["served_days"] == 2 and totals["served"]["rows"] == days["2013-01-06"]["rows"] + days["2013-01-07"]["rows"]
    assert totals["backtest_on_served_rows"]["roc_auc"] == pytest.approx(totals["served"]["roc_auc"], abs=1e-9)


def test_metrics_are_sklearns_on_the_same_rows(backtested):
    """An independent computation: the backtest's predictions joined to the raw outcomes, scored by sklearn."""
    lake, summary = backtested["lake"], backtested["summary"]
    pooled = []
    for day in summary["days"]:
        predictions = lake.read_partition(backtest_predictions_key(summary["id"], day["ds"]))
        outcomes = lake.read_partition(raw_key("flights", day["ds"]))[[*KEY, "arr_delay"]]
        joined = predictions.merge(outcomes, on=KEY)
        assert day["cancelled"] == int(joined["arr_delay"].isna().sum()) > 0
        labelled = joined[joined["arr_delay"].notna()]
        y, p = (labelled["arr_delay"] >= 15).astype(int).to_numpy(), labelled[PROBABILITY].to_numpy()
        assert day["rows"] == len(labelled) and day["scored"] == len(predictions)
        assert day["backtest"]["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert day["backtest"]["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
        assert day["backtest"]["log_loss"] == pytest.approx(log_loss(y, p), abs=1e-9)
        assert day["backtest"]["positive_rate"] == pytest.approx(y.mean())
        bins = np.clip(np.digitize(p, np.linspace(0, 1, 11)[1:-1]), 0, 9)
        ece = sum(abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).sum() for b in set(bins)) / len(y)
        assert day["backtest"]["calibration_ece"] == pytest.approx(ece, abs=1e-6)
        pooled.append(labelled.assign(y=y))
    pooled = pd.concat(pooled)
    assert summary["totals"]["backtest"]["roc_auc"] == pytest.approx(roc_auc_score(pooled["y"], pooled[PROBABILITY]))
    assert summary["totals"]["cancelled"] == sum(day["cancelled"] for day in summary["days"])


def test_outputs_are_written_under_the_backtest_report_only(backtested):
    lake, summary = backtested["lake"], backtested["summary"]
    assert summary["id"] == f"v{backtested['version']}_2013-01-06_2013-01-08"
    stored = lake.read_json(backtest_key(summary["id"], "backtest.json"))
    assert stored["days"] == summary["days"] and stored["request"]["version"] == backtested["version"]
    assert {"ds", "rows", "cancelled", "backtest", "served", "served_status"} <= set(stored["days"][0])
    html = lake.read_bytes(backtest_key(summary["id"], "backtest.html")).decode()
    assert "<table>" in html and "2013-01-07" in html and "backtest.png" in html
    assert lake.read_bytes(backtest_key(summary["id"], "backtest.png")).startswith(b"\x89PNG")
    assert lake.partition_exists(backtest_predictions_key(summary["id"], "2013-01-08"))
    assert not lake.partition_exists(predictions_key("2013-01-08")), "never the production predictions zone"


def test_a_model_trained_on_a_window_is_registered_unpromoted_and_reused(served_model, tmp_path, spark):
    lake, uri, settings = _copy(served_model, tmp_path)
    client = MlflowClient(uri)
    before = aliases(client, MODEL)
    request = BacktestRequest(train_start=dt.date(2013, 1, 1), train_end=dt.date(2013, 1, 5),
                              holdout_start=dt.date(2013, 1, 6), holdout_end=dt.date(2013, 1, 6),
                              family="sklearn_hgb", start=dt.date(2013, 1, 7), end=dt.date(2013, 1, 8))
    summary = run_backtest(lake, request, settings=settings, spark=spark)

    version = summary["model"]["version"]
    assert version != served_model["version"] and summary["training"]["reused"] is False
    assert summary["id"].startswith("window_2013-01-01_2013-01-05_2013-01-07_2013-01-08_")
    assert summary["model"]["training_window"]["train_end"] == "2013-01-05"
    assert aliases(client, MODEL) == before, "no alias moves: not champion, challenger put back"
    assert client.get_model_version(MODEL, version).tags["purpose"] == "backtest"
    assert [day["ds"] for day in summary["days"]] == ["2013-01-07", "2013-01-08"]
    assert lake.exists(backtest_key(summary["id"], "backtest.json"))

    again = run_backtest(lake, request, settings=settings, spark=spark)
    assert again["training"]["reused"] is True and again["model"]["version"] == version
    assert again["id"] == summary["id"] and again["days"][0]["backtest"] == summary["days"][0]["backtest"]
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == int(version)


@pytest.mark.parametrize(("arguments", "remove", "problems"), [
    (["--start", "2013-01-08", "--end", "2013-01-06"], None, ["the window ends (2013-01-06) before it starts"]),
    (["--start", "2012-12-30", "--end", "2013-01-02"], None, ["start 2012-12-30 is outside the source's flight dates"]),
    (["--version", "99", "--start", "2013-01-06", "--end", "2013-01-07"], None,
     ["flight_delay version 99 does not exist (registered versions: 1)"]),
    (["--start", "2013-01-10", "--end", "2013-01-12"], None,
     ["no features partition in the window 2013-01-10..2013-01-12", "no labels in the window 2013-01-10..2013-01-12"]),
    (["--start", "2013-01-08", "--end", "2013-01-08"], "raw/flights/date=2013-01-08",
     ["no labels in the window 2013-01-08..2013-01-08: no outcomes partition"]),
    (["--start", "2013-01-08", "--end", "2013-01-08"], "features/flights/date=2013-01-08",
     ["no features partition in the window 2013-01-08..2013-01-08"]),
    (["--train-start", "2013-01-01", "--train-end", "2013-01-07", "--start", "2013-01-06", "--end", "2013-01-08"],
     None, ["the training window 2013-01-01..2013-01-07 overlaps the backtest window 2013-01-06..2013-01-08"]),
    (["--version", "99", "--start", "2013-01-08", "--end", "2013-01-06", "--id", "../x"], None,
     ["ends (2013-01-06) before it starts", "version 99 does not exist", "id '../x' must be"]),
], ids=["end-before-start", "outside-source", "no-such-version", "no-features-no-labels", "no-labels", "no-features",
        "train-overlaps", "all-named-at-once"])
def test_bad_input_is_rejected_with_exit_3_naming_each_problem(served_model, tmp_path, monkeypatch, capsys,
                                                               arguments, remove, problems):
    root = tmp_path / "lake"
    shutil.copytree(served_model["lake_root"], root)
    if remove:
        shutil.rmtree(root / remove)
    monkeypatch.setenv("LAKE_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served_model["tracking_uri"])
    assert main(arguments) == 3
    error = capsys.readouterr().err
    assert error.startswith("ERROR jobs.backtest rejected:")
    for problem in problems:
        assert problem in error
    assert not (root / "reports" / "backtest").exists(), "rejected before any work"


def test_no_champion_yet_is_a_skip_with_exit_4(served_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/empty.db")
    monkeypatch.setenv("LAKE_ROOT", served_model["lake_root"])
    assert main(["--start", "2013-01-06", "--end", "2013-01-07"]) == 4
    assert capsys.readouterr().out.startswith("SKIPPED no flight_delay@champion yet")


def test_a_request_names_unknown_fields_and_bad_dates():
    with pytest.raises(BacktestRejected, match=r"unknown backtest request field\(s\) \['window'\]"):
        BacktestRequest.from_json({"window": "2013-01"})
    with pytest.raises(BacktestRejected, match="start '2013-13-01' is not a date"):
        BacktestRequest.from_json({"start": "2013-13-01"})
    assert BacktestRequest.from_json({"version": 3, "end": "2013-03-31", "alias": "", "seed": "7"}) == BacktestRequest(
        version="3", end=dt.date(2013, 3, 31), seed=7)


def test_compare_counts_cancelled_unlabelled_and_unserved_flights_apart():
    """Constructed rows: both sides are measured on the same flights, the others are counted."""
    day = dt.date(2013, 1, 6)
    backtest = pd.DataFrame({"flight": range(6), "flight_date": day, PROBABILITY: [0.9, 0.2, 0.7, 0.4, 0.5, 0.6]})
    labels = pd.DataFrame({"flight": range(5), "is_delayed": [1, 0, 1, 0, None]})  # 4: cancelled, 5: no outcome
    served = pd.DataFrame({"flight": [0, 1, 2, 4], "served_probability": [0.8, 0.3, 0.6, 0.1],
                           "served_version": "1"})  # 3: not served
    [row], totals = compare(backtest, labels, served, ["flight"], {"2013-01-06"}, 0.5)
    assert (row["scored"], row["cancelled"], row["no_outcome"], row["served_missing"], row["rows"]) == (6, 1, 1, 1, 3)
    assert row["backtest"]["rows"] == row["served"]["rows"] == 3
    assert row["backtest"]["roc_auc"] == row["served"]["roc_auc"] == 1.0
    assert row["served"]["mean_probability"] == pytest.approx((0.8 + 0.3 + 0.6) / 3)
    assert totals["rows"] == 3 and totals["served_versions"] == ["1"]
    [unserved], _ = compare(backtest, labels, served.iloc[0:0], ["flight"], set(), 0.5)
    assert unserved["served_status"] == "not served" and unserved["served"] is None and unserved["rows"] == 4
