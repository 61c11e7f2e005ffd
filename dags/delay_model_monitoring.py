"""
### delay_model_monitoring

Every day **D** (at 03:00 UTC, after ingestion, features and scoring of D), watch the serving
model and retrain when the world has moved (`python -m jobs.monitor --ds D`):

| task | does |
| --- | --- |
| `wait_for_predictions` | waits (soft, reschedule mode) for D's predictions; without them the run goes on, marks prediction drift `missing` and mails `predictions_late` |
| `monitor` | Evidently data drift of D's features and prediction drift of D's scores against the champion's training reference; served ROC AUC, precision, recall and calibration of the days whose outcomes have arrived (D-1 and the window before it); the retraining decision (its arguments count the `delay_model_training` runs queued or running as it starts: any, and it starts none) |
| `trigger_retraining` | the decision: retrain triggers `delay_model_training` with `conf` (the reason, the evidence and the windows); no is a *skip* whose reason is the decision |
| `wait_for_retraining` | waits (in the triggerer, up to `monitoring.training_wait_s`) for that training to finish: the next day's decision, and the scores it judges, follow from its outcome |

**The policy** (`retraining:` in settings, jobs/retrain.py: one decision with one table of
cases, asked here every day and by the weekly scheduled training): retrain when the champion's
data is `max_model_age_days` old, when dataset drift persists for `drift_days` days or when
the served AUC falls under `served_auc_floor`; drift and AUC wait out the champion's
`cooldown_days`, a rejected candidate holds new attempts for `retry_after_days`, and nothing
starts while a training runs. On this data a frozen model's AUC wanders with no trend while
weather drift tracks what a retrain gains, so drift alone can start one.

**Catch-up**: every missed day is monitored, in order (a missed day would break a drift
streak); each run waits in the triggerer for its day's predictions, and a run that started a
training waits for it, so a promotion (which rescores the days scored ahead of it) comes
before the next day is judged.

**Where to look**: the reports (**Browse > Pipeline reports > drift**, or the `monitor`
task's "Drift report" link), the MLflow experiment `flight_delay_monitoring` (one run per
champion version; its metrics plot the daily trend), and the `summary.json` of each day with
the decision. No champion or no features for D: `monitor` is *skipped* with the reason.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, CronTriggerTimetable

from common.config import CRITICAL_PATH, default_args, end_date, schedule_cron, settings, start_date
from common.notify import task_callback
from common.retraining import RetrainingTrigger
from common.sensors import DagRunFinishedSensor, LakeObjectSensor
from common.steps import pipeline_step
from jobs.retrain import monitoring_run_id
from jobs.score import predictions_key

DAG_ID = "delay_model_monitoring"
TRAINING_DAG_ID = "delay_model_training"
# Rendered on the worker as the monitor task starts (no task of its own: a hand-off less per day):
# how many delay_model_training runs are queued or running. Any: the policy starts no other.
ACTIVE_TRAININGS = f"{{{{ ti.get_dr_count('{TRAINING_DAG_ID}', states=['queued', 'running']) }}}}"

with DAG(
    dag_id=DAG_ID,
    description="Evidently drift + served performance of flight_delay@champion; triggers retraining on policy.",
    doc_md=__doc__,
    schedule=CronTriggerTimetable(schedule_cron(DAG_ID), timezone="UTC"),
    start_date=start_date(DAG_ID),
    # The monitoring of the last replayed day runs on that day (03:00), after the DAGs' end date (00:00).
    end_date=_end + dt.timedelta(days=1, seconds=-1) if (_end := end_date()) else None,
    # Every day of a catch-up is monitored (a day left out would break a drift streak), in order: each
    # decision reads the verdicts of the days before it. A run waits for its day's predictions.
    catchup=True,
    max_active_runs=1,
    default_args={**default_args(), **CRITICAL_PATH},
    tags=["monitoring", "evidently", "mlflow"],
) as dag:

    wait = LakeObjectSensor(
        task_id="wait_for_predictions",
        key=predictions_key("{{ ds }}"),
        flight_date="{{ ds }}",
        partition=True,
        soft_fail=True,
        # Skipped = D's predictions never came: told even when no scoring run for D was ever created.
        on_skipped_callback=task_callback("predictions_late"),
        doc_md="D's predictions (flights_batch_scoring); on timeout prediction drift is marked missing.",
    )
    monitor = pipeline_step(
        "monitor",
        step="monitor",
        arguments=["--ds", "{{ ds }}", "--active-trainings", ACTIVE_TRAININGS],
        trigger_rule="none_failed",
        doc_md="`python -m jobs.monitor --ds D --active-trainings N`: Evidently reports to reports/drift/D/, "
               "metrics to MLflow, the decision.",
    )

    trigger_retraining = RetrainingTrigger(
        task_id="trigger_retraining",
        trigger_dag_id=TRAINING_DAG_ID,
        trigger_run_id=monitoring_run_id("{{ ds }}"),
        # No logical date (Airflow 3): a run dated by the wall clock would fall after the DAGs' end date
        # (the source ends in 2013; a replay's clock ends with its window) and be created without tasks.
        logical_date=None,
        skip_when_already_exists=True,
        wait_for_completion=False,
        on_success_callback=task_callback("drift_retraining"),
        doc_md="The monitor's decision: retrain triggers delay_model_training with conf (reason, evidence, "
               "windows), one per monitored day at most; no is a skip whose reason is the decision.",
    )
    wait_for_retraining = DagRunFinishedSensor(
        task_id="wait_for_retraining",
        external_dag_id=TRAINING_DAG_ID,
        run_id=monitoring_run_id("{{ ds }}"),
        timeout=settings().monitoring.training_wait_s,
        soft_fail=True,
        doc_md="Waits for the training it started; the next day's monitoring starts after it (max_active_runs 1).",
    )
    wait >> monitor >> trigger_retraining >> wait_for_retraining
