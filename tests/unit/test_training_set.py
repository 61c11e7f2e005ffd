"""The training set (jobs/training_set.py): real features of real days (built with Spark) joined to their labels."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from jobs.features import compute_features, load_feature_schema
from jobs.lake import Lake, raw_key
from jobs.upstream.publish import publish
from jobs.settings import load_settings
from jobs.training_set import (
    LABEL, TrainingSetError, Windows, build_training_set, read_training_set, training_set_key,
)

FIRST = dt.date(2013, 1, 1)
DAYS = [FIRST + dt.timedelta(days=i) for i in range(3)]
WINDOWS = Windows(DAYS[0], DAYS[1], DAYS[2], DAYS[2])


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark, raw_frames) -> Lake:
    lake = Lake(str(tmp_path_factory.mktemp("training") / "lake"))
    publish(lake, FIRST, feeds=())
    for day in DAYS:
        for feed in ("schedule", "weather", "flights"):
            lake.write_partition(raw_key(feed, day.isoformat()), raw_frames(feed, day), {"status": "passed"})
    compute_features(lake, FIRST, len(DAYS), settings=load_settings("local"))
    return lake


def test_features_joined_to_labels_split_by_time(spark, lake, raw_frames):
    built = build_training_set(lake, WINDOWS, settings=load_settings("local"))
    train, holdout = (read_training_set(lake, built.set_id, s) for s in ("train", "holdout"))
    outcomes = raw_frames("flights", DAYS[0], DAYS[2])
    arrived = outcomes[outcomes["arr_delay"].notna()]
    assert set(train["flight_date"].astype(str)) == {"2013-01-01", "2013-01-02"}
    assert set(holdout["flight_date"].astype(str)) == {"2013-01-03"}
    assert built.rows == {"train": len(train), "holdout": len(holdout)}
    assert len(train) + len(holdout) == len(arrived), "every flight with an arrival, and only those"
    assert sum(built.cancelled_excluded.values()) == outcomes["arr_delay"].isna().sum()
    # The label is the outcome's arrival delay >= 15 min, joined on the flight key.
    key = list(load_feature_schema().key)
    expected = arrived.assign(expected=(arrived["arr_delay"] >= 15).astype(int))[key + ["expected"]]
    merged = pd.concat([train, holdout]).merge(expected, on=key, validate="one_to_one")
    assert (merged[LABEL] == merged["expected"]).all()
    assert list(train.columns) == [*load_feature_schema().names, LABEL]
    meta = lake.partition(training_set_key(built.set_id, "train")).metadata
    assert meta["positives"] == int(train[LABEL].sum()) and meta["content_sha256"] == built.content_sha256["train"]
    assert set(meta["labels"]) == {raw_key("flights", "2013-01-01"), raw_key("flights", "2013-01-02")}


def test_same_inputs_reuse_the_set_and_a_redelivery_makes_a_new_one(spark, lake, raw_frames):
    settings = load_settings("local")
    first = build_training_set(lake, WINDOWS, settings=settings)
    again = build_training_set(lake, WINDOWS, settings=settings)
    assert again.reused and again.set_id == first.set_id and again.content_sha256 == first.content_sha256
    lake.write_partition(raw_key("flights", "2013-01-03"), raw_frames("flights", DAYS[2]), {"status": "passed"})
    redelivered = build_training_set(lake, WINDOWS, settings=settings)
    assert not redelivered.reused and redelivered.set_id != first.set_id
    assert redelivered.content_sha256 == first.content_sha256, "same rows, new lineage"


def test_dates_without_features_or_outcomes_are_left_out_and_named(spark, lake):
    windows = Windows(DAYS[0], DAYS[1], DAYS[2], DAYS[2] + dt.timedelta(days=1))
    built = build_training_set(lake, windows, settings=load_settings("local"))
    assert built.dates_missing["holdout"] == {"2013-01-04": "no features partition features/flights/date=2013-01-04"}


def test_an_empty_window_is_an_error_naming_it(spark, lake):
    windows = Windows(dt.date(2013, 6, 1), dt.date(2013, 6, 30), DAYS[2], DAYS[2])
    with pytest.raises(TrainingSetError, match="train window 2013-06-01..2013-06-30 has no date with both"):
        build_training_set(lake, windows, settings=load_settings("local"))


@pytest.mark.parametrize(("args", "message"), [
    ((DAYS[1], DAYS[0], DAYS[2], DAYS[2]), "training window ends"),
    ((DAYS[0], DAYS[2], DAYS[1], DAYS[2]), "overlaps training"),
    ((DAYS[0], DAYS[0], DAYS[2], DAYS[1]), "holdout window ends"),
])
def test_bad_windows_are_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        Windows(*args)


def test_a_single_class_window_is_an_error(spark, lake, raw_frames):
    original = raw_frames("flights", DAYS[2])
    lake.write_partition(raw_key("flights", "2013-01-03"), original.assign(arr_delay=0.0), {"status": "passed"})
    try:
        with pytest.raises(TrainingSetError, match=r"holdout window 2013-01-03..2013-01-03 has a single class "
                                                   r"\(is_delayed=0 for all \d+ flights\)"):
            build_training_set(lake, WINDOWS, settings=load_settings("local"))
    finally:
        lake.write_partition(raw_key("flights", "2013-01-03"), original, {"status": "passed"})


def test_last_labelled_date_needs_features_and_outcomes(lake):
    from jobs.training_set import last_labelled_date

    assert last_labelled_date(lake) == DAYS[2]
    assert last_labelled_date(lake, not_after=DAYS[1]) == DAYS[1]
    assert last_labelled_date(Lake(lake.root + "-empty")) is None


@pytest.mark.parametrize(("requested", "expected"), [
    ({}, ("2013-01-01", "2013-03-17", "2013-03-18", "2013-03-31")),
    ({"holdout_start": "2013-03-01"}, ("2013-01-01", "2013-02-28", "2013-03-01", "2013-03-31")),
    ({"train_start": "2013-02-01", "train_end": "2013-02-28", "holdout_start": "2013-03-01",
      "holdout_end": "2013-03-07"}, ("2013-02-01", "2013-02-28", "2013-03-01", "2013-03-07")),
])
def test_default_windows_grow_up_to_the_holdout(requested, expected):
    from jobs.training_set import resolve_windows

    windows = resolve_windows(requested, dt.date(2013, 3, 31), dt.date(2013, 1, 1), dt.date(2013, 12, 31), 14)
    assert tuple(windows.to_json().values()) == expected


@pytest.mark.parametrize(("requested", "message"), [
    ({"train_start": "2012-12-01"}, "train_start 2012-12-01 is outside the data"),
    ({"holdout_end": "someday"}, "holdout_end 'someday' is not a date"),
    ({"train_start": "2013-03-10", "train_end": "2013-03-01"}, "training window ends"),
    ({"train_end": "2013-03-20"}, "overlaps training"),
])
def test_bad_requests_name_every_problem(requested, message):
    from jobs.training_set import resolve_windows

    with pytest.raises(ValueError, match=message):
        resolve_windows(requested, dt.date(2013, 3, 31), dt.date(2013, 1, 1), dt.date(2013, 12, 31), 14)


def test_no_labelled_day_is_named():
    from jobs.training_set import resolve_windows

    with pytest.raises(ValueError, match="no labelled day"):
        resolve_windows({}, None, dt.date(2013, 1, 1), dt.date(2013, 12, 31), 14)
