"""Layer 2: flights_features' wiring, its partitioned asset schedule, the dates a run builds, its Asset events.

Real Airflow objects: the DAG file executed as the dag-processor would, the
timetable as the scheduler reads it back from serialization, the `flight_dates`
task's own callable.
"""
from __future__ import annotations

import datetime as dt

import pytest

DAG_ID = "flights_features"


@pytest.fixture
def dag(load_dag):
    return load_dag(DAG_ID, "local")


@pytest.fixture
def module(load_dag_module):
    return load_dag_module(DAG_ID, "local")


def test_wiring_and_trigger_rule(dag):
    from common.operators import SubprocessStepOperator
    from common.sensors import LakeObjectSensor

    assert {t.task_id: set(t.upstream_task_ids) for t in dag.tasks} == {
        "flight_dates": set(),
        "wait_for_outcomes": {"flight_dates"},
        "build_features": {"wait_for_outcomes", "flight_dates"},
    }
    sensor = dag.get_task("wait_for_outcomes")
    assert isinstance(sensor, LakeObjectSensor) and sensor.partition and sensor.soft_fail
    build = dag.get_task("build_features")
    assert isinstance(build, SubprocessStepOperator) and build.step == "features"
    # A skipped wait (the outcomes never came, or the day before the source) still builds.
    assert build.trigger_rule == "none_failed"
    assert dag.max_active_runs == 1 and not dag.catchup


def test_scheduled_per_flight_date_on_the_raw_schedule_and_weather_assets(dag):
    from airflow.sdk import PartitionedAssetTimetable

    from common.assets import raw_asset
    from tests.dags.conftest import scheduler_dag

    assert isinstance(dag.timetable, PartitionedAssetTimetable)
    condition = dag.timetable.asset_condition
    assert {asset.name for asset in condition.objects} == {"raw_schedule", "raw_weather"}
    assert type(condition).__name__ == "AssetAll", "both feeds of a date, not either"
    assert set(condition.objects) == {raw_asset("schedule"), raw_asset("weather")}
    # What the scheduler reads back: a partition-driven timetable, so each date gets its own run.
    core = scheduler_dag(dag).timetable
    assert type(core).__name__ == "PartitionedAssetTimetable" and core.partitioned is True


def test_outlet_is_the_features_asset(dag):
    (outlet,) = dag.get_task("build_features").outlets
    assert outlet.name == "features_flights" and outlet.uri.endswith("/data/lake/features/flights")


@pytest.mark.parametrize(
    ("partition_key", "params", "expected"),
    [
        ("2013-03-05", {}, ("2013-03-05", 1, [])),
        # The key wins over the form; a datetime-like key is cut to its date.
        ("2013-03-05T00:00:00+00:00", {"start": "2013-01-01"}, ("2013-03-05", 1, [])),
        (None, {"start": "2013-01-01", "end": "2013-01-31"}, ("2013-01-01", 31, [])),
        (None, {"start": "2013-02-01", "force": True}, ("2013-02-01", 1, ["--force"])),
    ],
)
def test_flight_dates_of_a_run(dag, partition_key, params, expected):
    first, days, extra = expected
    out = dag.get_task("flight_dates").python_callable(params={"end": None, "force": False, **params},
                                                       partition_key=partition_key)
    assert out["arguments"] == ["--ds", first, "--days", str(days), *extra]
    assert out["first"] == first and out["days"] == days
    assert out["day_before"] == (dt.date.fromisoformat(first) - dt.timedelta(days=1)).isoformat()


@pytest.mark.parametrize(
    ("partition_key", "params", "message"),
    [
        (None, {}, "no flight date"),
        (None, {"start": "2013-02-10", "end": "2013-02-01"}, "end 2013-02-01 is before start 2013-02-10"),
        ("2014-01-05", {}, "outside the source's flight dates 2013-01-01..2013-12-31"),
        ("yesterday", {}, "partition key 'yesterday' is not a date"),
    ],
)
def test_bad_dates_fail_without_retry_naming_the_problem(dag, partition_key, params, message):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=message.replace(".", r"\.").replace("(", r"\(")):
        dag.get_task("flight_dates").python_callable(params={"start": None, "end": None, "force": False, **params},
                                                     partition_key=partition_key)


def test_only_written_partitions_emit_asset_events(module):
    from common.assets import features_asset

    written = {"ds": "2013-03-05", "status": "written", "features_uri": "file:///lake/features/flights/date=2013-03-05",
               "rows": 950, "fingerprint": "abc", "outcome_days_read": 28,
               "missing_inputs": ["raw/weather/date=2013-03-05", "raw/flights/date=2013-02-01"]}
    asset, key, extra = module.features_asset_event(written)
    assert asset == features_asset() and key == "2013-03-05"
    assert extra["rows"] == 950 and extra["warnings"] == ["missing input raw/weather/date=2013-03-05"]
    assert module.features_asset_event({**written, "status": "unchanged"}) is None


def test_production_builds_features_as_a_spark_application(load_dag):
    from common.spark_operator import SparkStepOperator

    dag = load_dag(DAG_ID, "production")
    build = dag.get_task("build_features")
    assert isinstance(build, SparkStepOperator) and build.step == "features"
    assert build.trigger_rule == "none_failed" and [o.name for o in build.outlets] == ["features_flights"]
