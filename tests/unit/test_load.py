"""The load run's pure checks (scripts/load_checks.py): natural keys, duplicate and misplaced rows, the task summary,
the verdict. The run itself is `make load` (too long for `make test`)."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from scripts.load_checks import FLIGHT_KEY, WEATHER_KEY, check_rows, format_summary, key_columns, missing_days, \
    partition_date, summarize_tasks, verdict


def flights(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[*FLIGHT_KEY, "probability"])


@pytest.mark.parametrize(("partition", "columns", "key"), [
    ("raw/schedule/date=2013-01-02", [*FLIGHT_KEY, "dest"], FLIGHT_KEY),
    ("raw/weather/date=2013-01-02", [*WEATHER_KEY, "temp"], WEATHER_KEY),
    ("predictions/flight_delay/date=2013-01-02", [*FLIGHT_KEY, "probability"], FLIGHT_KEY),
    ("features/flights/date=2013-01-02", ["carrier", "flight"], None),
])
def test_each_dataset_is_keyed_by_its_natural_key(partition, columns, key):
    assert key_columns(partition, columns) == key


def test_the_partition_date_comes_from_its_key():
    assert partition_date("features/flights/date=2013-01-02") == dt.date(2013, 1, 2)
    assert partition_date("training/flight_delay/set=abc/split=train") is None


def test_repeated_keys_and_rows_of_another_date_are_counted():
    frame = flights((2013, 1, 2, "UA", 1545, "EWR", 0.1), (2013, 1, 2, "UA", 1545, "EWR", 0.2),
                    (2013, 1, 2, "UA", 1545, "JFK", 0.3), (2013, 1, 3, "AA", 11, "JFK", 0.4))
    assert check_rows(frame, FLIGHT_KEY, dt.date(2013, 1, 2)) == {"rows": 4, "duplicates": 1, "other_date": 1}
    assert check_rows(frame, FLIGHT_KEY, None)["other_date"] == 0
    assert check_rows(frame.iloc[[0, 2]], FLIGHT_KEY, dt.date(2013, 1, 2)) == {"rows": 2, "duplicates": 0,
                                                                              "other_date": 0}


def task(dag_id, task_id, state, duration, try_number=1, run_id="r1"):
    return {"dag_id": dag_id, "task_id": task_id, "state": state, "duration": duration, "try_number": try_number,
            "dag_run_id": run_id, "map_index": -1}


def test_the_task_summary_counts_states_sums_time_and_keeps_sensor_waits_apart():
    summary = summarize_tasks([
        task("flights_ingest", "schedule.wait_for_landing", "success", 100.0),
        task("flights_ingest", "schedule.validate_and_publish", "success", 2.0),
        task("flights_ingest", "weather.validate_and_publish", "success", 3.0, try_number=2, run_id="r2"),
        task("flights_features", "build", "failed", 5.0),
        task("flights_batch_scoring", "score", "skipped", None),
    ])
    assert summary["by_state"] == {"failed": 1, "skipped": 1, "success": 3}
    assert summary["total"] == 5
    assert summary["task_s_by_dag"] == {"flights_ingest": 5.0, "flights_features": 5.0, "flights_batch_scoring": 0.0}
    assert summary["sensor_wait_s"] == 100.0
    assert [(t["dag_id"], t["task_id"]) for t in summary["failed"]] == [("flights_features", "build")]
    assert [(t["run_id"], t["try_number"]) for t in summary["retried"]] == [("r2", 2)]


def report(failed=(), duplicates=0, error=None):
    tasks = summarize_tasks([task("flights_features", "build", "failed" if failed else "success", 5.0)])
    dup_parts = [{"partition": "raw/schedule/date=2013-01-02", "rows": 900, "duplicates": duplicates,
                  "other_date": 0}] if duplicates else []
    return {"window": {"first": "2013-01-01", "last": "2013-01-30", "days": 30},
            "config": {"executor": "LocalExecutor", "parallelism": 4}, "wall_s": 1800.0,
            "phases": {"ingest + features": 600.0}, "tasks": tasks, "error": error,
            "lake": {"partitions": 1, "rows": 900, "duplicates": duplicates, "other_date": 0,
                     "partitions_with_duplicates": dup_parts, "row_count_mismatches": [],
                     "partitions_by_dataset": {"raw/schedule": 1}},
            "memory": {"rss_peak_gib": 5.0, "rss_mean_gib": 4.0, "samples": 1800, "pss_peak_gib": 3.0,
                       "pss_mean_gib": 2.5, "postgres_rss_peak_gib": 0.2, "processes_peak": 40}}


def test_a_clean_run_passes_and_says_so():
    assert verdict(report()) == []
    assert "verdict: PASS" in format_summary(report())


def test_a_failed_task_a_duplicate_or_an_unfinished_phase_fails_the_run():
    assert verdict(report(failed=True)) == ["1 failed task instance(s)"]
    assert verdict(report(duplicates=3)) == ["3 duplicate row(s) in 1 partition(s)"]
    assert verdict(report(error="monitoring: not done")) == ["monitoring: not done"]
    text = format_summary(report(failed=True, duplicates=3))
    assert "FAILED flights_features r1 build" in text and "DUPLICATES raw/schedule/date=2013-01-02: 3 of 900" in text


def test_the_days_without_a_run_are_found():
    runs = [{"dag_id": "flights_features", "partition_key": "2013-01-02"},
            {"dag_id": "flights_batch_scoring", "partition_key": "2013-01-01"},
            {"dag_id": "flights_ingest", "logical_date": "2013-01-01T00:00:00Z"}]
    days = ["2013-01-01", "2013-01-02", "2013-01-03"]
    assert missing_days(runs, "flights_features", "partition_key", days) == ["2013-01-01", "2013-01-03"]
    assert missing_days(runs, "flights_ingest", "logical_date", days) == ["2013-01-02", "2013-01-03"]


def test_a_run_the_scheduler_lost_fails_the_run_and_is_named():
    lost = {**report(), "lost_runs": [{"dag_id": "flights_features", "partition_key": "2013-01-01", "run_id": "m1",
                                       "after_s": 930.0, "why": "no run followed"}]}
    assert verdict(lost) == ["1 run(s) the scheduler never created: flights_features 2013-01-01"]
    assert "LOST flights_features 2013-01-01: no run followed; triggered by hand as m1 after 930 s" in format_summary(lost)


class FakeAirflow:
    """The client calls Load.wait and Load.recover_features make (scripts.airflow_api.AirflowClient's), over a
    fixed list of runs."""

    def __init__(self, runs):
        self.runs = runs
        self.posted = []

    def trigger(self, dag_id, partition_key=None, note=None, **_):
        self.posted.append((dag_id, partition_key, note))
        run = {"dag_id": dag_id, "partition_key": partition_key, "state": "success",
               "dag_run_id": f"manual_{len(self.posted)}"}
        self.runs.append(run)
        return run

    def all_runs(self):
        return list(self.runs)

    def task_instances(self, dag_id, run_id, state=None):
        return []


def test_a_catch_up_that_stalls_on_a_lost_features_run_starts_it_and_records_it(monkeypatch):
    from scripts import load as load_module

    monkeypatch.setattr(load_module.time, "sleep", lambda _s: None)
    runs = [{"dag_id": "flights_ingest", "logical_date": f"2013-01-0{d}T00:00:00Z", "state": "success"} for d in (1, 2)]
    runs.append({"dag_id": "flights_features", "partition_key": "2013-01-02", "state": "success"})
    client = FakeAirflow(runs)
    load = load_module.Load(client, dt.date(2013, 1, 1), 2, deadline=float("inf"))
    load.wait("features", load.covers("flights_features", "partition_key"), recover=load.recover_features, stall_s=0)
    assert client.posted == [("flights_features", "2013-01-01",
                              "make load: the run the scheduler did not create for this partition")]
    assert [(r["dag_id"], r["partition_key"], r["run_id"]) for r in load.lost_runs] == [
        ("flights_features", "2013-01-01", "manual_1")]


def test_a_stall_nothing_can_recover_fails_the_phase(monkeypatch):
    from scripts import load as load_module

    monkeypatch.setattr(load_module.time, "sleep", lambda _s: None)
    client = FakeAirflow([{"dag_id": "delay_model_monitoring", "logical_date": "2013-01-01T03:00:00Z",
                           "state": "success"}])
    load = load_module.Load(client, dt.date(2013, 1, 1), 2, deadline=float("inf"))
    with pytest.raises(TimeoutError, match="monitoring: nothing runs or starts for 0 s"):
        load.wait("monitoring", load.covers("delay_model_monitoring", "logical_date"), stall_s=0)
