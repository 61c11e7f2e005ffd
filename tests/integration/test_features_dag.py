"""flights_features through a real Airflow (dag.test()) on real days ingested by the real GX gate.

Raw partitions of 2013-01-01..04 are made by jobs.ingest (GX included) from the
replay publisher's files; the DAG then builds features as a manual range run,
skips what has not changed on a rerun, builds a single day after waiting for the
outcomes of the day before, and fails naming a missing schedule partition. The
Asset events the runs emit (partition key = flight date) are read from Airflow's
metadata DB.
"""
from __future__ import annotations

import datetime as dt

import pytest

from jobs.features import features_key
from jobs.ingest import ingest_feed
from jobs.lake import raw_key
from jobs.upstream.publish import publish
from jobs.settings import load_settings
from tests.integration.airflow_test import AirflowRunner

pytestmark = pytest.mark.integration

FIRST = dt.date(2013, 1, 1)
DAYS = [FIRST + dt.timedelta(days=i) for i in range(4)]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory) -> AirflowRunner:
    home = tmp_path_factory.mktemp("airflow_features")
    # No retries: a failure shows at once (the production default retries with backoff).
    runner = AirflowRunner(home, f"sqlite:///{home}/airflow.db", PIPELINE__AIRFLOW__RETRIES="0")
    lake, settings = runner.lake, load_settings("local")
    publish(lake, FIRST, days=len(DAYS))
    for day in DAYS:
        for feed in ("schedule", "weather", "flights"):
            ingest_feed(lake, feed, day.isoformat(), settings)
    return runner


def write_ids(runner: AirflowRunner, days) -> dict[str, str]:
    return {d.isoformat(): runner.lake.read_manifest(features_key(d.isoformat()))["write_id"] for d in days}


def test_a_range_run_builds_each_date_then_a_rerun_changes_nothing(airflow):
    lake = airflow.lake
    conf = {"start": "2013-01-01", "end": "2013-01-03"}
    state, tasks, out = airflow.dags_test("flights_features", "2013-01-03", conf)
    assert state == "success", out[-4000:]
    # The day before 2013-01-01 is outside the source: the wait skips and the build still runs.
    assert tasks["wait_for_outcomes"]["state"] == "skipped"
    assert tasks["build_features"]["state"] == "success"
    for day in DAYS[:3]:
        ds = day.isoformat()
        partition = lake.partition(features_key(ds))
        assert partition.rows == lake.partition(raw_key("schedule", ds)).rows > 0
        assert partition.metadata["outcome_days_read"] == (day - FIRST).days
    events = [e for e in airflow.last_result["asset_events"] if e["asset"] == "features_flights"]
    assert sorted(e["partition_key"] for e in events) == ["2013-01-01", "2013-01-02", "2013-01-03"]
    # One extra per task and asset (Airflow's rule): a range run's names each partition.
    partitions = events[0]["extra"]["partitions"]
    assert all(partitions[e["partition_key"]]["features_uri"].endswith(f"date={e['partition_key']}") for e in events)

    before = write_ids(airflow, DAYS[:3])
    state, tasks, out = airflow.dags_test("flights_features", "2013-01-04", conf)
    assert state == "success", out[-4000:]
    assert '"status": "unchanged"' in out and write_ids(airflow, DAYS[:3]) == before
    # Nothing new: the build shows skipped in the UI and wakes no consumer.
    assert tasks["build_features"]["state"] == "skipped"
    assert not [e for e in airflow.last_result["asset_events"] if e["asset"] == "features_flights"], (
        "an unchanged partition must not wake up scoring")

    state, _, out = airflow.dags_test("flights_features", "2013-01-05", {**conf, "force": True})
    assert state == "success", out[-4000:]
    after = write_ids(airflow, DAYS[:3])
    assert all(after[ds] != before[ds] for ds in before)


def test_a_single_day_waits_for_the_outcomes_of_the_day_before(airflow):
    state, tasks, out = airflow.dags_test("flights_features", "2013-01-06", {"start": "2013-01-04"})
    assert state == "success", out[-4000:]
    assert tasks["wait_for_outcomes"]["state"] == "success"
    meta = airflow.lake.partition(features_key("2013-01-04")).metadata
    assert meta["inputs"][raw_key("flights", "2013-01-03")], "the outcomes of D-1 were read"


def test_a_missing_schedule_fails_naming_the_partition(airflow):
    state, tasks, out = airflow.dags_test("flights_features", "2013-01-07", {"start": "2013-01-09"})
    assert state == "failed"
    assert tasks["build_features"]["state"] == "failed"
    assert airflow.lake.uri(raw_key("schedule", "2013-01-09")) in out
    assert not airflow.lake.partition_exists(features_key("2013-01-09"))
