"""Point-in-time proof: the features of day D do not move when any outcome of D or later does.

A real stretch, 2013-02-01..2013-02-10, goes through the real publisher and the real
ingestion (GX) into a local lake. Features are built for D = 2013-02-08, so the stretch
holds outcomes both before D (its history: 02-01..02-07) and from D on (02-08..02-10).
Then every outcome from D on is changed or removed, D's own actual departure and arrival
times included, and a day of outcomes that never happened is added; the features are
built again and must be identical, fingerprint included. A positive control changes the
outcomes of D-1 and sees the history features move: the comparison can fail.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs.features.cli import compute_features
from jobs.features.output import features_key
from jobs.features.transforms import HISTORY_KEYS, HISTORY_WINDOWS
from jobs.ingest import ingest_feed, load_references
from jobs.lake import MANIFEST, Lake, raw_key
from jobs.upstream.publish import publish
from jobs.settings import load_settings

FIRST = dt.date(2013, 2, 1)
D = dt.date(2013, 2, 8)
LAST = dt.date(2013, 2, 10)
OUTCOME_COLUMNS = ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time")
HISTORY_COLUMNS = [f"{key}_{stat}_{window}d" for key in HISTORY_KEYS for window in HISTORY_WINDOWS
                   for stat in ("flights", "delay_rate", "mean_arr_delay")]


def day(offset: int) -> dt.date:
    return D + dt.timedelta(days=offset)


@pytest.fixture(scope="module")
def settings():
    return load_settings("local")


@pytest.fixture(scope="module")
def lake(tmp_path_factory, settings) -> Lake:
    lake = Lake(str(tmp_path_factory.mktemp("leakage") / "lake"))
    days = (LAST - FIRST).days + 1
    publish(lake, FIRST, days=days, feeds=("schedule", "flights"))
    publish(lake, D, feeds=("weather",))  # only D's forecast is read; other days' would be ignored anyway
    references = load_references(lake, settings)
    for offset in range(days):
        ds = (FIRST + dt.timedelta(days=offset)).isoformat()
        feeds = ("schedule", "weather", "flights") if ds == D.isoformat() else ("schedule", "flights")
        for feed in feeds:  # the outcomes after their schedule: ingestion checks one against the other
            assert ingest_feed(lake, feed, ds, settings, references=references).status == "passed"
    return lake


def build(lake: Lake, settings, spark) -> tuple[pd.DataFrame, dict]:
    [result] = compute_features(lake, D, settings=settings, spark=spark)
    assert result.rows > 0
    return lake.read_partition(features_key(D.isoformat())), lake.partition(features_key(D.isoformat())).metadata


def rewrite_outcomes(lake: Lake, flight_date: dt.date, change, target: dt.date | None = None) -> None:
    frame = lake.read_partition(raw_key("flights", flight_date.isoformat()))
    lake.write_partition(raw_key("flights", (target or flight_date).isoformat()), change(frame.copy()),
                         {"status": "tampered by the leakage test"})


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    """Every actual time and delay moved by hours; a third of the flights cancelled instead."""
    frame["dep_delay"] = frame["dep_delay"] + 180
    frame["arr_delay"] = frame["arr_delay"] + 240
    frame["air_time"] = frame["air_time"] * 2
    frame["dep_time"] = ((frame["dep_time"] + 300) % 2400).astype("Int64")
    frame["arr_time"] = ((frame["arr_time"] + 400) % 2400).astype("Int64")
    cancelled = np.arange(len(frame)) % 3 == 0
    for column in OUTCOME_COLUMNS:
        frame.loc[cancelled, column] = pd.NA if frame[column].dtype == "Int64" else np.nan
    return frame


def test_features_ignore_every_outcome_from_the_day_on(lake, settings, spark):
    before, before_meta = build(lake, settings, spark)
    read = sorted(key for key in before_meta["inputs"] if key.startswith("raw/flights/"))
    assert read == [raw_key("flights", (FIRST + dt.timedelta(days=i)).isoformat()) for i in range(7)]
    assert before["history_days_available"].eq(7).all()

    rewrite_outcomes(lake, D, shifted)                                     # D's own actual times and delays
    Path(lake.uri(raw_key("flights", day(1).isoformat())), MANIFEST).unlink()  # D+1 removed
    rewrite_outcomes(lake, day(2), lambda f: f.assign(arr_delay=999.0, dep_delay=999.0))  # D+2 all late
    rewrite_outcomes(lake, day(2), shifted, target=day(3))                 # a day that has not happened yet

    after, after_meta = build(lake, settings, spark)
    pd.testing.assert_frame_equal(after, before)
    assert after_meta["fingerprint"] == before_meta["fingerprint"]
    assert after_meta["inputs"] == before_meta["inputs"]


def test_the_comparison_would_catch_a_change_in_the_history(lake, settings, spark):
    before, before_meta = build(lake, settings, spark)
    rewrite_outcomes(lake, day(-1), shifted)
    after, after_meta = build(lake, settings, spark)
    assert after_meta["fingerprint"] != before_meta["fingerprint"]
    changed = [c for c in HISTORY_COLUMNS if not after[c].equals(before[c])]
    assert changed == HISTORY_COLUMNS  # every window of every key includes D-1
    untouched = [c for c in before.columns if c not in HISTORY_COLUMNS]
    pd.testing.assert_frame_equal(after[untouched], before[untouched])
