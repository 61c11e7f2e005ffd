"""Parity: the Spark features equal an independent pandas implementation (tests/oracles/features_reference.py).

On one real month, January 2013: all 31 days in one Spark pass (the range mode a backfill
uses), so the first days (no history, then partial windows) and the full windows are both
covered, against the reference's plain per-day loop. Also on hand-made edge cases, which a
real month may not contain (sub-hour observations, the staleness boundary, unknown tails),
and a single day computed alone must equal the same day from the range.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from jobs.features.inputs import PLANES_SCHEMA_DDL, raw_spark_schema, read_planes
from jobs.features.params import FeatureParams
from jobs.features.schema import load_feature_schema
from jobs.features.transforms import INPUT_COLUMNS, build_features
from jobs.upstream.publish import source_table
from jobs.settings import load_settings
from tests.oracles.features_reference import SORT, reference_features

FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 1, 31)
UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def params() -> FeatureParams:
    return FeatureParams.from_settings(load_settings("local"))


@pytest.fixture(scope="module")
def january(raw_frames) -> dict[str, pd.DataFrame]:
    planes = read_planes(source_table("planes").to_csv(index=False).encode("utf-8"))
    return {"schedule": raw_frames("schedule", FIRST, LAST), "weather": raw_frames("weather", FIRST, LAST),
            "outcomes": raw_frames("flights", FIRST, LAST), "planes": planes}


def spark_features(spark, frames: dict[str, pd.DataFrame], params: FeatureParams) -> pd.DataFrame:
    def to_spark(frame: pd.DataFrame, feed: str):
        return spark.createDataFrame(frame[list(INPUT_COLUMNS[feed])], schema=raw_spark_schema(feed))

    built = build_features(
        to_spark(frames["schedule"], "schedule"), to_spark(frames["weather"], "weather"),
        to_spark(frames["outcomes"], "flights"), spark.createDataFrame(frames["planes"], PLANES_SCHEMA_DDL), params,
    )
    return built.toPandas().sort_values(SORT, kind="stable").reset_index(drop=True)


def pandas_features(frames: dict[str, pd.DataFrame], params: FeatureParams) -> pd.DataFrame:
    return reference_features(
        frames["schedule"], frames["weather"], frames["outcomes"], frames["planes"],
        weather_max_age_hours=params.weather_max_age_hours, default_delay_rate=params.default_delay_rate,
        default_mean_arr_delay=params.default_mean_arr_delay,
    )


def assert_same_features(spark_frame: pd.DataFrame, reference: pd.DataFrame, rtol: float = 1e-9) -> None:
    declared = load_feature_schema()
    assert list(spark_frame.columns) == list(declared.names) == list(reference.columns)
    assert len(spark_frame) == len(reference)
    mismatched = {}
    for column in declared.columns:
        got, want = spark_frame[column.name], reference[column.name]
        if column.type == "double":
            got, want = got.astype("float64").to_numpy(), want.astype("float64").to_numpy()
            same = np.isclose(got, want, rtol=rtol, atol=1e-9) | (np.isnan(got) & np.isnan(want))
        else:
            as_int = column.type in ("int", "bigint")
            got, want = (series.astype(object).where(series.notna(), None).map(
                lambda v: v if v is None or not as_int else int(v)) for series in (got, want))
            same = (got == want) | (got.isna() & want.isna())
        if not np.all(same):
            index = int(np.flatnonzero(~np.asarray(same))[0])
            mismatched[column.name] = (int((~np.asarray(same)).sum()), index, got[index], want[index])
    assert not mismatched, f"columns differ (count, first row, spark, reference): {mismatched}"


def test_spark_features_equal_the_pandas_reference_on_january(spark, january, params):
    spark_frame = spark_features(spark, january, params)
    reference = pandas_features(january, params)
    assert len(spark_frame) == len(january["schedule"]) == 27004
    assert_same_features(spark_frame, reference)
    # The month exercises what it should: no history on day 1, full windows later, unknown tails, and
    # missing weather hours bridged by an earlier observation (January has none stale: see test_edge_cases_agree).
    first_day = spark_frame[spark_frame["flight_date"] == FIRST]
    assert first_day["history_days_available"].eq(0).all()
    assert spark_frame["history_days_available"].max() == 28
    assert (spark_frame["weather_age_hours"] > 0).sum() > 0
    assert 0 < (~spark_frame["plane_known"]).sum() < len(spark_frame)


def test_a_day_alone_equals_the_same_day_in_a_range(spark, january, params):
    day = dt.date(2013, 1, 20)
    alone = {**january, "schedule": january["schedule"][january["schedule"]["flight_date"] == day]}
    single = spark_features(spark, alone, params)
    assert len(single) > 0
    assert_same_features(single, pandas_features(alone, params))


def at(hour: int, minute: int = 0, day: dt.date = FIRST) -> pd.Timestamp:
    return pd.Timestamp(dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC))


def test_edge_cases_agree(spark, params):
    day, before = dt.date(2013, 1, 9), dt.date(2013, 1, 8)
    schedule = pd.DataFrame([
        # carrier, flight, origin, dest, tailnum, local hour, time_hour
        ("UA", 1, "EWR", "IAH", "N14228", 10, at(10, day=day)),
        ("UA", 2, "EWR", "IAH", "N404XX", 15, at(15, 45, day=day)),   # exactly 3h after 12:45
        ("AA", 3, "EWR", "LAX", None, 16, at(16, day=day)),            # 3h15 after: stale
        ("B6", 4, "JFK", "BOS", "N24211", 5, at(5, day=day)),          # no JFK observation
        ("B6", 5, "LGA", "BOS", "N24211", 12, at(12, 30, day=day)),
    ], columns=["carrier", "flight", "origin", "dest", "tailnum", "hour", "time_hour"])
    schedule = schedule.assign(
        year=day.year, month=day.month, day=day.day, flight_date=day, sched_dep_time=schedule["hour"] * 100,
        distance=1000,
    ).astype({"carrier": "string", "origin": "string", "dest": "string", "tailnum": "string"})
    measurements = {m: 1.5 for m in ("dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure",
                                      "visib")}
    weather = pd.DataFrame([
        {"origin": "EWR", "time_hour": at(9, day=day), "temp": 9.0},
        {"origin": "EWR", "time_hour": at(12, 45, day=day), "temp": 12.75},
        {"origin": "LGA", "time_hour": at(12, day=day), "temp": 12.0},
        {"origin": "LGA", "time_hour": at(12, 40, day=day), "temp": 12.6},  # after 12:30
    ]).assign(flight_date=day, **measurements).astype({"origin": "string"})
    outcomes = pd.DataFrame([
        (before, "UA", "EWR", "IAH", "N14228", 20.0), (before, "UA", "EWR", "IAH", "N14228", None),
        (day - dt.timedelta(days=7), "AA", "EWR", "LAX", "N1", 3.0), (day - dt.timedelta(days=8), "B6", "JFK", "BOS",
                                                                      "N24211", 80.0),
        (day, "UA", "EWR", "IAH", "N14228", 300.0),
    ], columns=["flight_date", "carrier", "origin", "dest", "tailnum", "arr_delay"]).astype(
        {"carrier": "string", "origin": "string", "dest": "string", "tailnum": "string"})
    planes = read_planes(source_table("planes").to_csv(index=False).encode("utf-8"))
    frames = {"schedule": schedule, "weather": weather, "outcomes": outcomes, "planes": planes}

    spark_frame = spark_features(spark, frames, params)
    assert_same_features(spark_frame, pandas_features(frames, params))
    by_flight = spark_frame.set_index("flight")
    assert list(by_flight["weather_available"]) == [True, True, False, False, True]
    assert list(by_flight["temp"].astype("float64").fillna(-1)) == [9.0, 12.75, -1, -1, 12.0]
