"""The weekly scheduled run of delay_model_training asks the retraining policy first (jobs/retrain.py):
against a real MLflow registry (SQLite), a champion that is not due skips the run at `check_request`
with the decision's sentence; a champion past `max_model_age_days` trains, with that sentence as its reason."""
from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from jobs.registry import promote, training_history

MODEL = "flight_delay"
MONDAY = dt.datetime(2013, 3, 4, 6, tzinfo=dt.timezone.utc)  # the run for Monday 2013-03-04 06:00 UTC


def _register(client, holdout_end: str) -> str:
    """A version whose training run saw data up to `holdout_end` (only the tags the policy reads)."""
    import mlflow

    with mlflow.start_run() as run:
        mlflow.set_tag("window.holdout_end", holdout_end)
    return str(client.create_model_version(MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("schedule-test")
    client = MlflowClient(uri)
    client.create_registered_model(MODEL)
    yield client
    mlflow.set_tracking_uri(None)


def test_history_reads_the_champion_and_the_newest_candidate(registry):
    assert training_history(registry, MODEL).champion_version is None
    first = _register(registry, "2013-02-20")
    promote(registry, MODEL, first, "test")
    rejected = _register(registry, "2013-03-01")
    history = training_history(registry, MODEL)
    assert (history.champion_version, history.champion_through) == (first, dt.date(2013, 2, 20))
    assert (history.newest_version, history.newest_through, history.newest_promoted) == (
        rejected, dt.date(2013, 3, 1), False)


def _check_request(load_dag, runtime_ti):
    dag = load_dag("delay_model_training")
    ti, context = runtime_ti(dag, "check_request", MONDAY)
    return ti.task.execute(context)


def test_a_champion_that_is_not_due_skips_the_scheduled_run(registry, load_dag, runtime_ti, capsys):
    promote(registry, MODEL, _register(registry, "2013-02-20"), "test")
    with pytest.raises(AirflowSkipException, match=r"scheduled run for 2013-03-03: no retraining: champion v1 is "
                                                   r"11 day\(s\) old \(< 28\)"):
        _check_request(load_dag, runtime_ti)


def test_a_champion_past_its_age_trains_with_the_decision_as_its_reason(registry, load_dag, runtime_ti, tmp_path,
                                                                       monkeypatch):
    import pandas as pd

    from jobs.features import features_key
    from jobs.lake import Lake, raw_key

    promote(registry, MODEL, _register(registry, "2013-01-24"), "test")
    # The windows come from the lake: the days with features and labels, up to the run's cap (Mar 3).
    lake = Lake(str(tmp_path / "lake"))
    monkeypatch.setenv("LAKE_ROOT", lake.root)
    for day in pd.date_range("2013-02-20", "2013-03-04").date:
        for key in (raw_key("flights", day.isoformat()), features_key(day.isoformat())):
            lake.write_partition(key, pd.DataFrame({"x": [1]}))
    request = _check_request(load_dag, runtime_ti)
    reason = request["train_arguments"][request["train_arguments"].index("--reason") + 1]
    assert reason.startswith("schedule 2013-03-03: retrain: the champion v1 saw data up to 2013-01-24, 38 day(s)")
    assert request["windows"]["holdout_end"] == "2013-03-03"


def test_a_scheduled_run_after_the_schedules_end_skips_before_asking_the_registry(load_dag, runtime_ti):
    dag = load_dag("delay_model_training")
    ti, context = runtime_ti(dag, "check_request", dt.datetime(2026, 11, 30, 6, tzinfo=dt.timezone.utc))
    with pytest.raises(AirflowSkipException, match=r"scheduled run for 2026-11-29: after the schedule's end 2014-01-01"):
        ti.task.execute(context)


def test_a_manual_run_at_the_wall_clocks_date_has_every_task(load_dag):
    """The UI's trigger form proposes now as the logical date: the run must get its tasks (no DAG end_date)."""
    dag = load_dag("delay_model_training")
    assert dag.end_date is None and all(task.end_date is None for task in dag.tasks)


@pytest.mark.parametrize("answer, error, expected", [
    ({"chosen_options": ["Approve"], "responded_by_user": {"id": "1", "name": "admin"},
      "responded_at": "2026-12-06T19:00:00+00:00"}, None, ("approved", "admin", "2026-12-06T19:00:00+00:00")),
    ({"chosen_options": ["Reject"], "responded_by_user": {"id": "2", "name": "bob"}, "responded_at": "t"}, None,
     ("rejected", "bob", "t")),
    (None, TimeoutError("HITL response timeout after 3 days"), ("timed_out", None, None)),
    (None, RuntimeError("the worker died"), ("failed", None, None)),
])
def test_the_approve_tasks_answer_becomes_an_outcome(answer, error, expected):
    from jobs.registry import approval_outcome

    assert approval_outcome(answer, error)[:3] == expected


def test_the_approve_task_records_its_answer_either_way(load_dag):
    """As it completes (RunApprovalOperator.execute_complete: an answer or a timeout), and for a failure it
    never saw, in its failure callback (the flows themselves: tests/browser/test_ui.py)."""
    from common.approval import RunApprovalOperator, record_approval

    approve = load_dag("delay_model_training").get_task("approve")
    assert isinstance(approve, RunApprovalOperator)
    assert record_approval in approve.on_failure_callback and not approve.on_success_callback


def test_a_promotion_rescores_the_days_scored_ahead_of_monitoring(load_dag, tmp_path, monkeypatch):
    """In a catch-up, days are scored before monitoring has judged the day before them: after `promote` of a
    training monitoring of day X started, the days after X with features are scored again by the new champion (a
    flights_batch_scoring run, waited for); live there are none, nor for a training by hand: skipped."""
    import pandas as pd
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    from jobs.lake import Lake

    dag = load_dag("delay_model_training")
    ahead, rescore = dag.get_task("days_scored_ahead"), dag.get_task("rescore_ahead")
    assert ahead.upstream_task_ids == {"promote"} and rescore.upstream_task_ids == {"days_scored_ahead"}
    assert isinstance(rescore, TriggerDagRunOperator) and rescore.trigger_dag_id == "flights_batch_scoring"
    assert rescore.wait_for_completion and rescore.logical_date is None

    lake = Lake(str(tmp_path / "lake"))
    monkeypatch.setenv("LAKE_ROOT", lake.root)
    for day in ("2013-07-14", "2013-07-15", "2013-07-16"):
        lake.write_partition(f"features/flights/date={day}", pd.DataFrame({"x": [1]}))
    with pytest.raises(AirflowSkipException, match="not started by monitoring"):
        ahead.python_callable(run_id="manual__2026-12-07T01:00:00+00:00")
    lake.write_json("reports/drift/2013-07-14/summary.json", {"ds": "2013-07-14"})
    assert ahead.python_callable(run_id="monitoring__2013-07-14") == {"ahead_of": "2013-07-14"}
    with pytest.raises(AirflowSkipException, match="no day after 2013-07-16"):
        ahead.python_callable(run_id="monitoring__2013-07-16")
