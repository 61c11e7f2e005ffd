"""
### delay_model_training

Train a candidate flight-delay model, compare it with the serving one on the same
held-out days, and let only a better model become `champion`.

| task | does |
| --- | --- |
| `check_request` | resolves the windows (defaults below) and rejects a bad request before anything runs |
| `build_training_set` | features of the windows joined to their labels (Arrow), split by time (`python -m jobs.training_set`) |
| `train` | `python -m jobs.train`: torch model (GPU pod in production) + HGB baseline, tracked in MLflow; the candidate becomes a version with alias `challenger` |
| `evaluate_and_gate` | `python -m jobs.evaluate`: candidate, baseline and champion on the holdout; the gate's decision and reasons go to MLflow and a model card |
| `gate_decision` | branches: rejected -> `not_promoted`; approval required -> `approve`; else `skip_approval` |
| `approve` | a person approves or rejects in the Airflow UI (human-in-the-loop); unanswered after `approval_timeout_hours`, it fails and nothing is promoted |
| `promote` | `champion` moves to the candidate, the old champion becomes `previous` |
| `days_scored_ahead` | for a training monitoring of day X started: the days after X already scored by the old champion (a catch-up, a replay); none live, none for a training by hand or schedule, and then the rescoring is *skipped* |
| `rescore_ahead` | a `flights_batch_scoring` run with `ahead_of` X scores them again with the new champion, so every day is served by the champion of its start |

**When it runs**: by hand (trigger form below: always trains), when `delay_model_monitoring`
decides to retrain (its `conf` fills `reason` and the windows), and weekly on schedule. The
scheduled run asks the same decision as monitoring (jobs/retrain.py, `retraining:` in
settings) with its model-age rule: a champion younger than `max_model_age_days`, or a
rejected candidate inside `retry_after_days`, and the run is *skipped* at `check_request` with
the sentence of the decision. One run at a time.

**Windows** (defaults): the holdout is the last `training.holdout_days` days that have
features and labels; training is everything labelled before it, from 2013-01-01 (a growing
window beat a sliding one-month window in 9 of 10 months here). The last
`training.validation_days` of the training window stop the training early.

**Where to look**: the MLflow experiment `flight_delay_training` (a candidate run and its
`hgb-baseline` sibling: params, curves, lineage, gate tags), the model's versions and
aliases, and the model card: **Browse > Pipeline reports > training**.
Roll back with `delay_model_rollback`.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, CronTriggerTimetable, Param, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from common.config import CRITICAL_PATH, default_args, end_date, schedule_cron, settings, start_date
from common.approval import APPROVAL_TIMEOUT_HOURS, RunApprovalOperator, record_approval
from common.notify import task_callback
from common.params import optional_date
from common.steps import pipeline_step

DAG_ID = "delay_model_training"
_data, _training = settings().data, settings().training
# The schedule stops at the data's end (or the replay clock's): no end_date on the DAG, which would also
# make a manual run from the UI (logical date: now) an empty run that "succeeds" without a task.
_schedule_end = end_date()
_failure_callbacks = [c for c in [default_args().get("on_failure_callback")] if c]
# Who approved, recorded in the promotion's reason on the version (nothing when no approval was asked).
APPROVAL = ("{% set answer = ti.xcom_pull(task_ids='approve') %}{% if answer %}; approved in the Airflow UI by "
            "{{ (answer.get('responded_by_user') or {}).get('name', 'unknown') }} at {{ answer.get('responded_at') }}"
            "{% endif %}")


with DAG(
    dag_id=DAG_ID,
    description="Train a candidate delay model (GPU pod), gate it against the champion, register and promote.",
    doc_md=__doc__,
    schedule=CronTriggerTimetable(schedule_cron(DAG_ID), timezone="UTC"),
    start_date=start_date(),
    catchup=False,
    max_active_runs=1,
    default_args={**default_args(), **CRITICAL_PATH},
    tags=["training", "mlflow", "gpu"],
    params={
        "train_start": optional_date("Training start", "First flight date of the training window "
                                   f"(default {_data.first_flight_date})."),
        "train_end": optional_date("Training end", "Last flight date of the training window "
                                 "(default: the day before the holdout)."),
        "holdout_start": optional_date("Holdout start", "First held-out flight date (default: holdout end - "
                                     f"{_training.holdout_days - 1} days)."),
        "holdout_end": optional_date("Holdout end", "Last held-out flight date (default: the last day with "
                                   "features and labels)."),
        "family": Param(_training.family, type="string", enum=["torch_mlp", "sklearn_hgb"], title="Model family",
                        description="torch_mlp: embeddings + MLP (GPU in production); sklearn_hgb: the baseline only."),
        "epochs": Param(_training.epochs, type="integer", minimum=1, maximum=500, title="Epochs",
                        description="Upper bound: early stopping usually ends sooner."),
        "batch_size": Param(_training.batch_size, type="integer", minimum=32, maximum=65536, title="Batch size",
                            description="Rows per optimisation step."),
        "learning_rate": Param(_training.learning_rate, type="number", exclusiveMinimum=0, maximum=0.5,
                               title="Learning rate", description="AdamW's peak rate (one warm-up epoch, then cosine)."),
        "seed": Param(_training.seed, type="integer", minimum=0, title="Seed",
                      description="Same seed, same data, same machine: the same model."),
        "use_gpu": Param(_training.use_gpu, type="boolean", title="Use a GPU",
                         description="Train on CUDA when the pod has one (mixed precision); CPU otherwise."),
        "require_approval": Param(_training.require_approval, type="boolean", title="Require approval",
                                  description="A person must approve in the UI before the champion moves."),
        "approval_timeout_hours": Param(APPROVAL_TIMEOUT_HOURS, type="number", exclusiveMinimum=0, maximum=720,
                                        title="Approval timeout (hours)",
                                        description="With approval required: how long to wait for an answer. "
                                                    "Unanswered by then, nothing is promoted."),
        "reason": Param(None, type=["null", "string"], maxLength=2000, title="Reason",
                        description="Why this training runs (filled by monitoring); recorded in MLflow."),
    },
) as dag:

    @task(multiple_outputs=True)
    def check_request(params: dict | None = None, dag_run: Any = None, data_interval_end: Any = None) -> dict[str, Any]:
        """The run's requests to jobs.training_set (its Windows) and jobs.train (its TrainRequest), as their CLI
        arguments; a bad request fails here, named by the jobs' own checks, before anything runs.

        AirflowFailException: no retry, a request does not get better by waiting.
        """
        from jobs.lake import Lake
        from jobs.train import TrainRequest
        from jobs.training_set import last_labelled_date, resolve_windows

        # The trigger form's JSON schema refuses wrong types and ranges first; the jobs' requests check the rest.
        params = params or {}
        # A scheduled run for week W may only use labels that had arrived by then, and trains only when
        # the retraining policy says so (the same decision monitoring asks every day).
        cap = None
        if dag_run is not None and getattr(dag_run, "run_type", "") == "scheduled" and data_interval_end:
            cap = data_interval_end.date() - dt.timedelta(days=1)
            if _schedule_end is not None and cap >= _schedule_end.date():
                raise AirflowSkipException(
                    f"scheduled run for {cap}: after the schedule's end {_schedule_end.date()} (airflow.end_date: the "
                    "data's last day, or the replay clock); trigger the DAG by hand to train now")
            from jobs.registry import scheduled_training_decision

            decision = scheduled_training_decision(cap)
            print(("TRAIN " if decision.retrain else "NO TRAINING ") + decision.summary)
            if not decision.retrain:
                raise AirflowSkipException(f"scheduled run for {cap}: {decision.summary}")
            params = {**params, "reason": f"schedule {cap}: {decision.summary}"}
        try:
            windows = resolve_windows(params, last_labelled_date(Lake.from_settings(), cap),
                                      _data.first_flight_date, _data.last_flight_date, _training.holdout_days)
            request = TrainRequest.from_params(windows, params, airflow_dag_id=DAG_ID,
                                               airflow_run_id=dag_run.run_id if dag_run is not None else None)
        except ValueError as exc:
            raise AirflowFailException(f"bad training request: {exc}") from None
        return {"windows": windows.to_json(), "set_arguments": windows.argv(), "train_arguments": request.argv(),
                "require_approval": bool(params.get("require_approval"))}

    request = check_request()
    training_set = pipeline_step("build_training_set", step="training_set", arguments=request["set_arguments"],
                                 doc_md="`python -m jobs.training_set`: features x labels (Arrow join), time split.")
    train = pipeline_step("train", step="train", arguments=request["train_arguments"],
                          doc_md="`python -m jobs.train`: candidate + HGB baseline in MLflow; alias challenger.")
    version = "{{ ti.xcom_pull(task_ids='train')[0]['model_version'] }}"
    # The gate's result (jobs.evaluate's STEP_RESULT), as the templates below read it.
    gate = "ti.xcom_pull(task_ids='evaluate_and_gate')[0]"
    evaluate = pipeline_step("evaluate_and_gate", step="evaluate", arguments=["--version", version],
                             doc_md="`python -m jobs.evaluate`: holdout metrics, the gate, the model card.")

    @task.branch
    def gate_decision(ti: Any = None) -> str:
        """Where the gate's decision leads (the reasons are in the evaluate log and the model card)."""
        result = ti.xcom_pull(task_ids="evaluate_and_gate")[0]
        require = ti.xcom_pull(task_ids="check_request", key="require_approval")
        for reason in result["reasons"]:
            print(("PASS " if result["passed"] else "FAIL ") + reason)
        if not result["passed"]:
            return "not_promoted"
        return "approve" if require else "skip_approval"

    decision = gate_decision()
    not_promoted = EmptyOperator(task_id="not_promoted", on_success_callback=task_callback("gate_rejected"),
                                 doc_md="The gate rejected the candidate: it stays `challenger`; the champion is unchanged.")
    approve = RunApprovalOperator(
        task_id="approve",
        subject=f"Promote {settings().mlflow.model_name} version {version} to champion?",
        # A link relative to the Airflow UI, where the approver reads this.
        body=(f"The gate passed: {{{{ {gate}['reasons'] | join('; ') }}}}.\n\n"
              f"[Model card of version {version}](/pipeline/{{{{ {gate}['model_card_key'] }}}})"),
        on_failure_callback=[record_approval, *_failure_callbacks],
    )
    skip_approval = EmptyOperator(task_id="skip_approval", doc_md="No approval required for this run.")
    promote = pipeline_step(
        "promote", step="registry",
        arguments=["promote", "--version", version, "--reason",
                   f"gate passed ({{{{ {gate}['reasons'] | join('; ') }}}}){APPROVAL}; airflow run {{{{ run_id }}}}"],
        trigger_rule="none_failed_min_one_success",
        on_success_callback=task_callback("promoted"),
        doc_md="`python -m jobs.registry promote`: champion -> candidate, old champion -> previous.",
    )

    @task
    def days_scored_ahead(run_id: str | None = None) -> dict[str, str]:
        """The conf of the rescoring run: the monitored day X that started this training (its run id,
        `monitoring__X`); skipped when no day after X is scored yet (live), or when no monitoring started it."""
        from jobs.lake import Lake
        from jobs.retrain import started_on
        from jobs.score import dates_ahead

        decided_on = started_on(run_id)
        if decided_on is None:
            raise AirflowSkipException("not started by monitoring: the new champion serves from now on, no day is "
                                       "rescored")
        days = dates_ahead(Lake.from_settings(), decided_on)
        if not days:
            raise AirflowSkipException(f"no day after {decided_on} is scored yet: nothing to rescore")
        print(f"{len(days)} day(s) after {decided_on} scored ahead by the old champion: {days[0]}..{days[-1]}")
        return {"ahead_of": decided_on.isoformat()}

    ahead = days_scored_ahead()
    rescore_ahead = TriggerDagRunOperator(
        task_id="rescore_ahead",
        trigger_dag_id="flights_batch_scoring",
        conf=ahead,
        logical_date=None,  # as monitoring's trigger: a wall-clock date would fall after the DAGs' end date
        wait_for_completion=True,
        deferrable=True,
        poke_interval=settings().sensors.poke_interval_s,
        doc_md="flights_batch_scoring with `ahead_of` X: the days after X scored ahead, by the new champion.",
    )
    request >> training_set >> train >> evaluate >> decision >> [not_promoted, approve, skip_approval]
    [approve, skip_approval] >> promote >> ahead >> rescore_ahead
