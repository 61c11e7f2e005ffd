"""Layer 2: flights_batch_scoring and delay_model_monitoring: schedules, wiring, Asset events, the trigger.

Real Airflow objects: the DAG files executed as the dag-processor would, timetables as the
scheduler reads them back, task callables and operators as built for each runner.
"""
from __future__ import annotations

import pytest


@pytest.fixture
def scoring(load_dag):
    return load_dag("flights_batch_scoring", "local")


@pytest.fixture
def monitoring(load_dag):
    return load_dag("delay_model_monitoring", "local")


def test_scoring_runs_per_flight_date_on_the_features_asset(scoring):
    from airflow.sdk import PartitionedAssetTimetable

    from common.assets import features_asset, predictions_asset
    from common.operators import SubprocessStepOperator
    from tests.dags.conftest import scheduler_dag

    assert isinstance(scoring.timetable, PartitionedAssetTimetable)
    assert scoring.timetable.asset_condition == features_asset()
    assert scheduler_dag(scoring).timetable.partitioned is True
    assert {t.task_id: set(t.upstream_task_ids) for t in scoring.tasks} == {"flight_dates": set(),
                                                                            "score": {"flight_dates"}}
    score = scoring.get_task("score")
    assert isinstance(score, SubprocessStepOperator) and score.step == "score"
    assert score.outlets == [predictions_asset()]
    assert set(scoring.params.keys()) == {"start", "end", "ahead_of"}


def test_scoring_dates_from_partition_key_or_range(scoring):
    from airflow.sdk.exceptions import AirflowFailException

    flight_dates = scoring.get_task("flight_dates").python_callable
    assert flight_dates(params={}, partition_key="2013-03-02") == ["--ds", "2013-03-02", "--days", "1"]
    assert flight_dates(params={"start": "2013-03-01", "end": "2013-03-07"}, partition_key=None) == [
        "--ds", "2013-03-01", "--days", "7"]
    with pytest.raises(AirflowFailException, match="end 2013-02-01 is before start 2013-03-01"):
        flight_dates(params={"start": "2013-03-01", "end": "2013-02-01"}, partition_key=None)
    # After a promotion in a catch-up: the job finds the dates scored ahead of monitoring itself.
    assert flight_dates(params={"ahead_of": "2013-03-01", "start": None}, partition_key=None) == [
        "--ahead-of", "2013-03-01"]
    assert flight_dates(params={"ahead_of": "2013-03-01"}, partition_key="2013-03-02") == [
        "--ds", "2013-03-02", "--days", "1"]
    # The scheduler's run of a features event catches up (scores the later ready days too); a person's does not.
    from types import SimpleNamespace

    from airflow.utils.types import DagRunType

    for run_type, expected in ((DagRunType.ASSET_TRIGGERED, ["--ds", "2013-03-02", "--catch-up"]),
                               (DagRunType.MANUAL, ["--ds", "2013-03-02", "--days", "1"])):
        assert flight_dates(params={}, partition_key="2013-03-02",
                            dag_run=SimpleNamespace(run_type=run_type)) == expected, run_type


def test_predictions_event_names_the_model(load_dag_module):
    module = load_dag_module("flights_batch_scoring", "local")
    asset, key, extra = module.predictions_asset_event(
        {"ds": "2013-03-02", "status": "written", "predictions_uri": "file:///lake/predictions/flight_delay/date=2013-03-02",
         "rows": 900, "model_version": "4", "model_run_id": "abc", "predicted_delayed_rate": 0.1})
    assert asset.name == "predictions_flight_delay" and key == "2013-03-02"
    assert extra["model_version"] == "4" and extra["rows"] == 900


def test_monitoring_wiring_and_trigger(monitoring):
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk import CronTriggerTimetable

    from common.sensors import DagRunFinishedSensor, LakeObjectSensor

    assert isinstance(monitoring.timetable, CronTriggerTimetable)
    assert monitoring.max_active_runs == 1 and monitoring.catchup, "every day of a catch-up, in order"
    assert {t.task_id: set(t.upstream_task_ids) for t in monitoring.tasks} == {
        "wait_for_predictions": set(),
        "monitor": {"wait_for_predictions"},
        "trigger_retraining": {"monitor"},
        "wait_for_retraining": {"trigger_retraining"},
    }
    wait = monitoring.get_task("wait_for_predictions")
    assert isinstance(wait, LakeObjectSensor) and wait.soft_fail and wait.partition
    assert wait.key == "predictions/flight_delay/date={{ ds }}"
    assert monitoring.get_task("monitor").trigger_rule == "none_failed"
    trigger = monitoring.get_task("trigger_retraining")
    assert isinstance(trigger, TriggerDagRunOperator)
    assert trigger.trigger_dag_id == "delay_model_training" and not trigger.wait_for_completion
    assert trigger.skip_when_already_exists, "a rerun of the same day does not start a second training"
    # Dated by the wall clock, the training run would fall after the DAG's end date and get no tasks.
    assert trigger.logical_date is None
    # The next day is judged after the training's outcome (its promotion, and the rescoring that follows).
    waiting = monitoring.get_task("wait_for_retraining")
    assert isinstance(waiting, DagRunFinishedSensor) and waiting.soft_fail
    assert (waiting.external_dag_id, waiting.run_id) == ("delay_model_training", trigger.trigger_run_id)
    assert waiting.timeout == 21600


def test_the_trigger_hands_over_the_monitors_conf_or_skips_with_the_decision(monitoring, monkeypatch):
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk.exceptions import AirflowSkipException

    trigger = monitoring.get_task("trigger_retraining")
    triggered = []
    monkeypatch.setattr(TriggerDagRunOperator, "execute", lambda self, context: triggered.append(self.conf))

    class TI:
        def __init__(self, result):
            self.result = result

        def xcom_pull(self, task_ids):
            assert task_ids == "monitor"
            return [self.result]

    conf = {"reason": "delay_model_monitoring 2013-07-15: retrain: ...", "holdout_end": "2013-07-14"}
    trigger.execute({"ti": TI({"retrain": True, "decision": "retrain: dataset drift", "retrain_conf": conf})})
    assert triggered == [conf]
    with pytest.raises(AirflowSkipException, match="no retraining: drift streak 1/3"):
        trigger.execute({"ti": TI({"retrain": False, "decision": "no retraining: drift streak 1/3", "retrain_conf": None})})
    assert triggered == [conf], "no decision to retrain, no training run"


def test_the_monitor_counts_active_trainings_as_it_renders(monitoring):
    """No task of its own: the monitor's arguments count the trainings queued or running when it starts."""
    class TI:
        def __init__(self, count):
            self.count, self.asked = count, None

        def get_dr_count(self, dag_id, states):
            self.asked = (dag_id, tuple(states))
            return self.count

    monitor = monitoring.get_task("monitor")
    for count in (0, 2):
        ti = TI(count)
        rendered = monitor.render_template(list(monitor.arguments), {"ds": "2013-07-15", "ti": ti})
        assert rendered == ["--ds", "2013-07-15", "--active-trainings", str(count)]
        assert ti.asked == ("delay_model_training", ("queued", "running"))


def test_production_runs_scoring_as_a_spark_application_and_monitoring_in_a_pod(load_dag):
    from common.pod_operator import PodStepOperator
    from common.spark_operator import SparkStepOperator

    assert isinstance(load_dag("flights_batch_scoring", "production").get_task("score"), SparkStepOperator)
    monitor = load_dag("delay_model_monitoring", "production").get_task("monitor")
    assert isinstance(monitor, PodStepOperator) and monitor.image.startswith("ghcr.io/flight-delay/jobs:")


def test_waiting_for_the_training_is_the_triggerers_and_ends_either_way(monitoring):
    from airflow.providers.standard.triggers.external_task import DagStateTrigger
    from airflow.sdk.exceptions import TaskDeferred

    waiting = monitoring.get_task("wait_for_retraining")
    waiting.run_id = "monitoring__2013-07-15"  # as rendered for the run of 2013-07-15
    with pytest.raises(TaskDeferred) as deferred:
        waiting.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, DagStateTrigger)
    assert (trigger.dag_id, trigger.run_ids) == ("delay_model_training", ["monitoring__2013-07-15"])
    assert set(trigger.states) == {"success", "failed"}, "a failed training ends the wait too (it reports itself)"
    assert deferred.value.timeout.total_seconds() == 21600
    waiting.execute_complete({}, ("path", {"monitoring__2013-07-15": "failed"}))  # no error: the day goes on


def test_monitoring_may_start_later_than_the_other_dags(load_dag_module):
    """`airflow.start_dates` (a replay: monitoring starts with the first day a champion served); the others keep
    `airflow.start_date`."""
    import datetime as dt

    later = {"PIPELINE__AIRFLOW__START_DATES__DELAY_MODEL_MONITORING": "2013-02-01",
             "PIPELINE__AIRFLOW__START_DATE": "2013-01-01"}
    monitoring = load_dag_module("delay_model_monitoring", "local", **later).dag
    scoring = load_dag_module("flights_batch_scoring", "local", **later).dag
    assert monitoring.start_date == dt.datetime(2013, 2, 1, tzinfo=dt.timezone.utc)
    assert scoring.start_date == dt.datetime(2013, 1, 1, tzinfo=dt.timezone.utc)


def test_the_loops_critical_path_goes_first_when_worker_slots_are_short(monitoring, load_dag):
    """In a catch-up monitoring judges one day at a time (and waits for its training) while the other DAGs run ahead."""
    training = load_dag("delay_model_training", "local")
    for task in [*monitoring.tasks, *training.tasks]:
        assert (task.priority_weight, str(task.weight_rule)) == (10, "absolute"), task.task_id
    scoring = load_dag("flights_batch_scoring", "local")
    assert all(task.priority_weight < 10 for task in scoring.tasks)
