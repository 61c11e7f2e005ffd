"""jobs.features: each feature family on tiny hand-made frames, the declared schema, and the CLI on a real lake.

Real local Spark (the session-scoped `spark` fixture); the lake tests write real days'
raw partitions directly (tests/unit/conftest.py's raw_frame) instead of running GX.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import yaml

from jobs.features.cli import compute_features, lake_results, main
from jobs.features.inputs import PLANES_SCHEMA_DDL, packed_frame, raw_spark_schema, read_planes
from jobs.features.output import features_key, write_features
from jobs.features.params import FeatureParams, us_federal_holidays
from jobs.features.schema import FeatureColumn, FeatureSchemaError, load_feature_schema
from jobs.features.transforms import (
    build_features, history_features, plane_features, schedule_features, weather_features,
)
from jobs.lake import MANIFEST, Lake, raw_key
from jobs.upstream.publish import publish
from jobs.results import EXIT_OK, EXIT_USAGE, parse_results
from jobs.settings import load_settings
from tests.oracles import features_reference

UTC = dt.timezone.utc
D = dt.date(2013, 7, 3)
PARAMS = FeatureParams(weather_max_age_hours=3, default_delay_rate=0.2, default_mean_arr_delay=0.0,
                       holidays=us_federal_holidays(2013, 2014))


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def scheduled(flight: int, *, day: dt.date = D, hour: int = 10, minute: int = 0, carrier: str = "UA",
              origin: str = "EWR", dest: str = "IAH", tailnum: str | None = "N1", time_hour: dt.datetime | None = None):
    """One row of raw/schedule (time_hour given in UTC: these frames pretend local time is UTC)."""
    return {"year": day.year, "month": day.month, "day": day.day, "carrier": carrier, "flight": flight,
            "origin": origin, "flight_date": day, "sched_dep_time": hour * 100 + minute, "tailnum": tailnum,
            "dest": dest, "distance": 1400, "hour": hour, "time_hour": time_hour or at(day, hour)}


def observed(origin: str, time_hour: dt.datetime, temp: float, *, feed_date: dt.date | None = None,
             wind_gust: float | None = 20.0):
    measurements = {m: 1.0 for m in ("dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib")}
    return {"origin": origin, "flight_date": feed_date or time_hour.date(), "time_hour": time_hour, "temp": temp,
            "wind_gust": wind_gust, **measurements}


def outcome(day: dt.date, arr_delay: float | None, *, carrier: str = "UA", origin: str = "EWR", dest: str = "IAH",
            tailnum: str | None = "N1"):
    return {"flight_date": day, "carrier": carrier, "origin": origin, "dest": dest, "tailnum": tailnum,
            "arr_delay": arr_delay}


def frame(spark, feed: str, rows: list[dict]):
    schema = raw_spark_schema(feed)
    return spark.createDataFrame([tuple(row[name] for name in schema.fieldNames()) for row in rows], schema=schema)


def planes(spark, rows: list[tuple] = ()):
    return spark.createDataFrame(list(rows), PLANES_SCHEMA_DDL)


def by_flight(df) -> dict[int, dict]:
    return {row["flight"]: row.asDict() for row in df.collect()}


# Schedule, calendar, congestion ---------------------------------------------------------------
def test_holidays_come_from_pandas_calendar_and_match_the_hand_written_list():
    assert us_federal_holidays(2013, 2014) == features_reference.HOLIDAYS


def test_schedule_features_calendar_route_and_congestion(spark):
    rows = [
        scheduled(1, hour=10), scheduled(2, hour=10, dest="ORD"), scheduled(3, hour=10, minute=59),
        scheduled(4, hour=11), scheduled(5, hour=10, origin="JFK"),
        scheduled(6, day=dt.date(2013, 7, 4)), scheduled(7, day=dt.date(2013, 12, 30)),
        scheduled(8, day=dt.date(2013, 11, 25)), scheduled(9, day=dt.date(2013, 1, 1)),
    ]
    got = by_flight(schedule_features(frame(spark, "schedule", rows), PARAMS.holidays))
    assert got[1]["route"] == "EWR-IAH" and got[2]["route"] == "EWR-ORD" and got[5]["route"] == "JFK-IAH"
    assert got[3]["sched_dep_hour"] == 10 and got[4]["sched_dep_hour"] == 11
    # 2013-07-03 is a Wednesday, the day before Independence Day.
    assert (got[1]["day_of_week"], got[1]["days_to_nearest_holiday"]) == (3, 1)
    assert (got[6]["day_of_week"], got[6]["days_to_nearest_holiday"]) == (4, 0)
    assert (got[7]["day_of_week"], got[7]["days_to_nearest_holiday"]) == (1, 2)  # to New Year's Day 2014
    assert (got[8]["day_of_week"], got[8]["days_to_nearest_holiday"]) == (1, 3)  # to Thanksgiving
    assert (got[9]["day_of_week"], got[9]["days_to_nearest_holiday"]) == (2, 0)
    # Departures scheduled at the same origin, date and hour (flight 3 at 10:59 counts in hour 10).
    assert [got[f]["origin_hour_departures"] for f in (1, 2, 3, 4, 5, 6)] == [3, 3, 3, 1, 1, 1]


def test_plane_features_known_unknown_and_missing_year(spark):
    rows = [scheduled(1, tailnum="N1"), scheduled(2, tailnum="N2"), scheduled(3, tailnum="N404"),
            scheduled(4, tailnum=None)]
    table = planes(spark, [("N1", 2003, 200, "Turbo-fan"), ("N2", None, 2, "Reciprocating")])
    got = by_flight(plane_features(schedule_features(frame(spark, "schedule", rows), PARAMS.holidays), table))
    assert {k: got[1][k] for k in ("plane_known", "plane_age", "plane_seats", "plane_engine")} == {
        "plane_known": True, "plane_age": 10, "plane_seats": 200, "plane_engine": "Turbo-fan"}
    assert (got[2]["plane_known"], got[2]["plane_age"], got[2]["plane_seats"]) == (True, None, 2)
    for unknown in (3, 4):  # a tail the table lacks, and no tail at all
        assert (got[unknown]["plane_known"], got[unknown]["plane_age"], got[unknown]["plane_seats"],
                got[unknown]["plane_engine"]) == (False, None, None, None)


# Weather ------------------------------------------------------------------------------------------
def test_weather_is_the_latest_observation_at_or_before_the_hour_and_stale_counts_as_missing(spark):
    weather = frame(spark, "weather", [
        observed("EWR", at(D, 8), 8.0), observed("EWR", at(D, 9), 9.0, wind_gust=None),
        observed("EWR", at(D, 12), 12.0), observed("EWR", at(D, 12, 45), 12.75),
        observed("LGA", at(D, 10), 100.0),
        # The previous day's feed, an hour before flight 8: not the flight date's feed, so not used.
        observed("EWR", at(D, 0) - dt.timedelta(hours=1), -1.0, feed_date=D - dt.timedelta(days=1)),
    ])
    rows = [
        scheduled(1, hour=10), scheduled(2, hour=9), scheduled(3, hour=12, time_hour=at(D, 12, 30)),
        scheduled(4, hour=15, time_hour=at(D, 15, 45)), scheduled(5, hour=16), scheduled(6, hour=7),
        scheduled(7, hour=10, origin="JFK"), scheduled(8, hour=0),
    ]
    got = by_flight(weather_features(frame(spark, "schedule", rows), weather, max_age_hours=3))
    expected = {  # flight: (temp, age in hours)
        1: (9.0, 1.0),     # 09:00 is the latest at or before 10:00
        2: (9.0, 0.0),     # an observation at the scheduled hour itself counts
        3: (12.0, 0.5),    # 12:45 is after 12:30
        4: (12.75, 3.0),   # exactly at the age limit: still fresh
    }
    for flight, (temp, age) in expected.items():
        assert (got[flight]["weather_available"], got[flight]["temp"], got[flight]["weather_age_hours"]) == (
            True, temp, age), flight
    assert got[1]["wind_gust"] is None and got[1]["weather_available"]  # not measured is not missing
    for flight in (5, 6, 7, 8):  # 3h15 old; none earlier; no observation at JFK; only the previous day's feed
        row = got[flight]
        assert (row["weather_available"], row["temp"], row["weather_age_hours"], row["visib"]) == (
            False, None, None, None), flight


# History ------------------------------------------------------------------------------------------
def days_before(n: int) -> dt.date:
    return D - dt.timedelta(days=n)


def test_history_windows_end_the_day_before_and_exclude_cancelled(spark):
    later = D + dt.timedelta(days=2)
    outcomes = frame(spark, "flights", [
        outcome(days_before(1), 30.0),
        outcome(days_before(1), None, tailnum="N2"),  # cancelled: no arrival, excluded
        outcome(days_before(7), 0.0, dest="ORD"),
        outcome(days_before(8), 20.0),                 # 28-day window only
        outcome(days_before(28), 60.0, carrier="DL", origin="LGA", dest="ATL", tailnum="N3"),
        outcome(days_before(29), 100.0),               # outside both windows
        outcome(D, 500.0),                             # the day itself: never seen by D
        outcome(D + dt.timedelta(days=1), 500.0),      # later still
    ])
    rows = [scheduled(1), scheduled(2, carrier="AA", origin="JFK", dest="LAX", tailnum="N9"),
            scheduled(3, tailnum=None), scheduled(4, day=later)]
    flights = schedule_features(frame(spark, "schedule", rows), PARAMS.holidays)
    got = by_flight(history_features(flights, outcomes, PARAMS))

    one = got[1]
    assert one["history_days_available"] == 4  # D-1, D-7, D-8, D-28 (a cancelled flight's day counts)
    for key in ("carrier", "origin", "tailnum"):
        assert (one[f"{key}_flights_7d"], one[f"{key}_delay_rate_7d"], one[f"{key}_mean_arr_delay_7d"]) == (
            2, 0.5, 15.0), key
        assert (one[f"{key}_flights_28d"], one[f"{key}_mean_arr_delay_28d"]) == (3, 50.0 / 3), key
        assert one[f"{key}_delay_rate_28d"] == pytest.approx(2 / 3), key
    assert (one["route_flights_7d"], one["route_delay_rate_7d"], one["route_mean_arr_delay_7d"]) == (1, 1.0, 30.0)
    assert (one["route_flights_28d"], one["route_delay_rate_28d"], one["route_mean_arr_delay_28d"]) == (2, 1.0, 25.0)

    # No history for its carrier, origin, route or tail: all departures of the window instead.
    two = got[2]
    for key in ("carrier", "origin", "route", "tailnum"):
        assert (two[f"{key}_flights_7d"], two[f"{key}_delay_rate_7d"], two[f"{key}_mean_arr_delay_7d"]) == (
            0, 0.5, 15.0), key
        assert (two[f"{key}_flights_28d"], two[f"{key}_delay_rate_28d"], two[f"{key}_mean_arr_delay_28d"]) == (
            0, 0.75, 27.5), key
    assert (got[3]["tailnum_flights_7d"], got[3]["tailnum_delay_rate_7d"]) == (0, 0.5)  # no tail scheduled
    assert got[3]["carrier_flights_7d"] == 2

    # Two days later the window D-5 .. D+1 holds D-1, D and D+1: each date gets its own windows.
    four = got[4]
    assert (four["carrier_flights_7d"], four["carrier_delay_rate_7d"]) == (3, 1.0)
    assert four["carrier_mean_arr_delay_7d"] == pytest.approx(1030 / 3)


def test_no_history_gives_documented_defaults_and_a_zero_indicator(spark):
    flights = schedule_features(frame(spark, "schedule", [scheduled(1)]), PARAMS.holidays)
    outcomes = frame(spark, "flights", [outcome(D, 45.0), outcome(days_before(29), 45.0)])  # none usable
    row = by_flight(history_features(flights, outcomes, PARAMS))[1]
    assert row["history_days_available"] == 0
    for key in ("carrier", "origin", "route", "tailnum"):
        for window in (7, 28):
            assert (row[f"{key}_flights_{window}d"], row[f"{key}_delay_rate_{window}d"],
                    row[f"{key}_mean_arr_delay_{window}d"]) == (0, 0.2, 0.0)


# The declared schema ------------------------------------------------------------------------------
def tiny_features(spark, schema=None):
    return build_features(
        frame(spark, "schedule", [scheduled(1), scheduled(2, tailnum="N404")]),
        frame(spark, "weather", [observed("EWR", at(D, 9), 9.0)]),
        frame(spark, "flights", [outcome(days_before(1), 30.0)]),
        planes(spark, [("N1", 2003, 200, "Turbo-fan")]),
        PARAMS, schema,
    )


def test_build_features_has_exactly_the_declared_schema(spark):
    declared = load_feature_schema()
    built = tiny_features(spark)
    assert [(f.name, f.dataType.simpleString()) for f in built.schema.fields] == [
        (c.name, {"int": "int", "double": "double", "string": "string", "boolean": "boolean", "date": "date"}[c.type])
        for c in declared.columns]
    got = by_flight(built)
    assert got[1]["plane_known"] and not got[2]["plane_known"]
    assert got[1]["carrier_flights_7d"] == 1 and got[1]["weather_age_hours"] == 1.0
    # Nothing of the outcomes (actual times, delays) is carried into the features.
    assert not {"dep_time", "arr_time", "dep_delay", "arr_delay", "air_time"} & set(built.columns)
    assert set(declared.model_inputs) <= set(declared.names)
    assert declared.key == ("year", "month", "day", "carrier", "flight", "origin")


def test_a_declared_column_not_built_or_of_another_kind_is_an_error(spark):
    declared = load_feature_schema()
    extra = FeatureColumn(name="runway_length", type="double", role="numeric", doc="not built by anyone")
    with pytest.raises(FeatureSchemaError, match=r"declared column runway_length \(double\) is not built"):
        tiny_features(spark, declared.model_copy(update={"columns": (*declared.columns, extra)}))
    retyped = tuple(c.model_copy(update={"type": "string"}) if c.name == "distance" else c for c in declared.columns)
    with pytest.raises(FeatureSchemaError, match="column distance: declared string, built number"):
        tiny_features(spark, declared.model_copy(update={"columns": retyped}))
    fewer = tuple(c for c in declared.columns if c.name != "plane_age")
    with pytest.raises(FeatureSchemaError, match="built column plane_age is not declared"):
        tiny_features(spark, declared.model_copy(update={"columns": fewer}))


def test_write_checks_the_schema_and_writes_nothing_on_mismatch(spark, local_lake):
    from pyspark.sql import functions as F

    declared = load_feature_schema()
    built = tiny_features(spark)
    with pytest.raises(FeatureSchemaError, match=r"missing column plane_age \(int\)"):
        write_features(local_lake, built.drop("plane_age"), [D], {D.isoformat(): {}}, declared)
    with pytest.raises(FeatureSchemaError, match="column distance: declared int, got string"):
        write_features(local_lake, built.withColumn("distance", F.col("distance").cast("string")), [D],
                       {D.isoformat(): {}}, declared)
    assert not local_lake.partition_exists(features_key(D.isoformat()))


def test_a_bad_schema_file_fails_naming_it(tmp_path):
    shipped = yaml.safe_load(Path(load_settings("local").features.schema_path).read_text())
    shipped["columns"].append(dict(shipped["columns"][0]))
    bad = tmp_path / "features.yaml"
    bad.write_text(yaml.safe_dump(shipped))
    with pytest.raises(FeatureSchemaError, match=r"features.yaml: not a valid feature schema[\s\S]*duplicated.*year"):
        load_feature_schema(bad)


def test_code_version_covers_every_module_of_the_package(tmp_path, monkeypatch):
    """Editing any module of jobs/features/ changes the code version (and so every fingerprint); the path does not."""
    import shutil

    from jobs.features import output

    def version() -> str:
        output.code_version.cache_clear()
        return output.code_version()["code_version"]

    shipped = version()
    copy = tmp_path / "features"
    shutil.copytree(output.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    modules = sorted(copy.glob("*.py"))
    assert {"__init__.py", "__main__.py", "cli.py", "output.py", "transforms.py"} <= {m.name for m in modules}
    monkeypatch.setattr(output, "PACKAGE_DIR", copy)
    try:
        assert version() == shipped  # the same files elsewhere: the same version
        for module in modules:
            source = module.read_bytes()
            module.write_bytes(source + b"\n# an edit\n")
            assert version() != shipped, f"{module.name} is not in the code version"
            module.write_bytes(source)
        (copy / "extra.py").write_text("")
        assert version() != shipped, "a module added is not in the code version"
    finally:
        output.code_version.cache_clear()


# Input ----------------------------------------------------------------------------------------------
def test_a_packed_frame_gives_back_every_row_with_its_types(spark, raw_frames, monkeypatch):
    import pyarrow as pa

    from jobs.features import inputs

    monkeypatch.setattr(inputs, "PACKED_ROWS", 100)  # several packed rows, the last one short
    schema = raw_spark_schema("schedule")
    table = pa.Table.from_pandas(raw_frames("schedule", D)[schema.fieldNames()], preserve_index=False)
    assert table.num_rows > 250 and table["tailnum"].null_count > 0
    loose = spark.createDataFrame(table, schema=schema)
    packed = packed_frame(spark, table, schema)
    assert packed.schema == loose.schema
    order = [("carrier", "ascending"), ("flight", "ascending"), ("origin", "ascending")]
    assert packed.toArrow().sort_by(order).equals(loose.toArrow().sort_by(order))
    assert packed_frame(spark, table.slice(0, 0), schema).count() == 0


def test_read_planes_keeps_one_row_per_tail_the_first():
    csv = b"tailnum,year,type,manufacturer,model,engines,seats,speed,engine\n" \
          b"N1,2003,x,y,z,2,200,,Turbo-fan\nN2,,x,y,z,1,2,,Reciprocating\nN1,1990,x,y,z,2,100,,Turbo-jet\n"
    planes = read_planes(csv)
    assert list(planes["tailnum"]) == ["N1", "N2"]
    assert (planes.loc[0, "year"], planes.loc[0, "seats"], planes.loc[0, "engine"]) == (2003, 200, "Turbo-fan")
    assert pd.isna(planes.loc[1, "year"])


# The CLI on a lake of real days -------------------------------------------------------------------
FIRST = dt.date(2013, 1, 1)
DAYS = [FIRST + dt.timedelta(days=i) for i in range(3)]
LAST = DAYS[-1]


@pytest.fixture
def raw_lake(tmp_path, raw_frames) -> Lake:
    """Raw schedule, weather and outcomes of 2013-01-01..03 and the reference tables, as ingestion leaves them."""
    lake = Lake(str(tmp_path / "lake"))
    publish(lake, FIRST, feeds=())  # reference tables only
    for day in DAYS:
        for feed in ("schedule", "weather", "flights"):
            lake.write_partition(raw_key(feed, day.isoformat()), raw_frames(feed, day), {"status": "passed"})
    return lake


def drop_partition(lake: Lake, key: str) -> None:
    Path(lake.uri(key), MANIFEST).unlink()


def test_cli_writes_the_day_with_its_lineage_and_a_rerun_is_identical(spark, raw_lake, monkeypatch, capsys):
    monkeypatch.setenv("LAKE_ROOT", raw_lake.root)
    ds = LAST.isoformat()
    assert main(["--ds", ds]) == EXIT_OK
    [result] = parse_results(capsys.readouterr().out)
    partition = raw_lake.partition(features_key(ds))
    meta = partition.metadata
    assert result["rows"] == partition.rows == raw_lake.partition(raw_key("schedule", ds)).rows
    assert result["features_uri"] == raw_lake.uri(features_key(ds)) and result["fingerprint"] == meta["fingerprint"]

    read = {raw_key("schedule", ds), raw_key("weather", ds), raw_key("flights", "2013-01-01"),
            raw_key("flights", "2013-01-02")}
    assert meta["inputs"] == {key: raw_lake.read_manifest(key)["write_id"] for key in read}
    # Days before the source begins are not missing; the day's own outcomes are never read.
    assert meta["missing_inputs"] == [] and meta["outcome_days_read"] == 2 and meta["outcome_days_missing"] == 0
    assert meta["feature_schema_version"] == load_feature_schema().version
    assert meta["code_version"].startswith("sha256:") and meta["reference"]["landing/reference/planes.csv"]

    features = raw_lake.read_partition(features_key(ds))
    assert set(features["history_days_available"]) == {2}
    assert features["weather_available"].mean() > 0.95
    # The CLI releases a Spark Connect session it started, never an in-process one (this one is shared).
    on_disk = spark.read.parquet(raw_lake.uri(features_key(ds)))
    assert [(f.name, f.dataType) for f in on_disk.schema.fields] == [
        (f.name, f.dataType) for f in load_feature_schema().spark_schema().fields]

    # Same inputs, code and settings: a no-op that keeps the partition; --force rebuilds it, identically.
    write_id = raw_lake.read_manifest(features_key(ds))["write_id"]
    assert main(["--ds", ds]) == EXIT_OK
    [again] = parse_results(capsys.readouterr().out)
    assert (again["status"], again["fingerprint"], again["rows"]) == ("unchanged", result["fingerprint"], result["rows"])
    assert raw_lake.read_manifest(features_key(ds))["write_id"] == write_id
    assert main(["--ds", ds, "--force"]) == EXIT_OK
    [forced] = parse_results(capsys.readouterr().out)
    assert (forced["status"], forced["fingerprint"]) == ("written", result["fingerprint"])
    assert raw_lake.read_manifest(features_key(ds))["write_id"] != write_id
    assert len(raw_lake.partition(features_key(ds)).files) == 1
    pd.testing.assert_frame_equal(raw_lake.read_partition(features_key(ds)), features)


def test_a_redelivered_input_rebuilds_only_the_dates_that_read_it(spark, raw_lake, raw_frames):
    settings = load_settings("local")
    first = compute_features(raw_lake, DAYS[1], 2, settings=settings, spark=spark)
    assert [r.status for r in first] == ["written", "written"]
    since = dt.datetime.now(dt.timezone.utc)
    # Outcomes of Jan 2 are redelivered: only Jan 3 read them (Jan 2 never sees its own outcomes).
    raw_lake.write_partition(raw_key("flights", DAYS[1].isoformat()), raw_frames("flights", DAYS[1]), {})
    second = compute_features(raw_lake, DAYS[1], 2, settings=settings, spark=spark)
    assert [r.status for r in second] == ["unchanged", "written"]
    assert second[0].fingerprint == first[0].fingerprint and second[1].fingerprint != first[1].fingerprint
    # What a runner that cannot read stdout (a SparkApplication) reports, from the lake.
    args = ["--ds", DAYS[1].isoformat(), "--days", "2"]
    from_lake = lake_results_with(raw_lake, args, since)
    assert [(r["ds"], r["status"], r["fingerprint"]) for r in from_lake] == [
        (r.ds, r.status, r.fingerprint) for r in second]


def lake_results_with(lake: Lake, args: list[str], since: dt.datetime) -> list[dict]:
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, {"LAKE_ROOT": lake.root}):
        return lake_results(args, since)


def test_missing_weather_partition_and_outcome_day_are_recorded_not_fatal(spark, raw_lake):
    ds = LAST.isoformat()
    drop_partition(raw_lake, raw_key("weather", ds))
    drop_partition(raw_lake, raw_key("flights", "2013-01-01"))
    [result] = compute_features(raw_lake, LAST, settings=load_settings("local"), spark=spark)
    assert result.missing_inputs == [raw_key("weather", ds), raw_key("flights", "2013-01-01")]
    meta = raw_lake.partition(features_key(ds)).metadata
    assert (meta["outcome_days_read"], meta["outcome_days_missing"]) == (1, 1)
    features = raw_lake.read_partition(features_key(ds))
    assert len(features) == result.rows > 0
    assert not features["weather_available"].any() and features["temp"].isna().all()
    assert set(features["history_days_available"]) == {1}


def test_a_day_without_flights_writes_an_empty_partition_with_the_schema(spark, raw_lake, raw_frames):
    ds = LAST.isoformat()
    raw_lake.write_partition(raw_key("schedule", ds), raw_frames("schedule", LAST).iloc[:0], {"status": "passed"})
    [result] = compute_features(raw_lake, LAST, settings=load_settings("local"), spark=spark)
    assert result.rows == 0 and raw_lake.partition(features_key(ds)).rows == 0
    on_disk = spark.read.parquet(raw_lake.uri(features_key(ds)))
    assert on_disk.count() == 0
    assert [(f.name, f.dataType) for f in on_disk.schema.fields] == [
        (f.name, f.dataType) for f in load_feature_schema().spark_schema().fields]
    assert list(raw_lake.read_partition(features_key(ds)).columns) == list(load_feature_schema().names)


def test_a_missing_schedule_exits_2_naming_the_partition(tmp_path, monkeypatch, capsys):
    lake = Lake(str(tmp_path / "lake"))
    publish(lake, FIRST, feeds=())
    monkeypatch.setenv("LAKE_ROOT", lake.root)
    assert main(["--ds", "2013-03-01"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert lake.uri(raw_key("schedule", "2013-03-01")) in captured.err
    assert parse_results(captured.out) == []
    assert not lake.partition_exists(features_key("2013-03-01"))


def test_a_long_range_runs_in_passes_with_the_same_features(spark, raw_lake, monkeypatch):
    from jobs.features import cli

    settings = load_settings("local")
    one_pass = compute_features(raw_lake, FIRST, 3, settings=settings, spark=spark, force=True)
    frames = {r.ds: raw_lake.read_partition(features_key(r.ds)) for r in one_pass}
    monkeypatch.setattr(cli, "RANGE_PASS_DAYS", 1)
    passes = compute_features(raw_lake, FIRST, 3, settings=settings, spark=spark, force=True)
    assert [(r.ds, r.fingerprint, r.rows) for r in passes] == [(r.ds, r.fingerprint, r.rows) for r in one_pass]
    for ds, frame in frames.items():
        pd.testing.assert_frame_equal(raw_lake.read_partition(features_key(ds)), frame)
