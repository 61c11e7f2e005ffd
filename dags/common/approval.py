"""What a person answered at delay_model_training's `approve`, recorded on the candidate version in MLflow.

`RunApprovalOperator` records the answer as the task completes, inside the task's own run (before its state
is final): Approve or Reject from the answer (`chosen_options`, `responded_by_user`, `responded_at`), or
`timed_out` when nobody answered within the run's `approval_timeout_hours`. A callback would run after the
state is final, racing the end of the run (a rejected run ends as soon as `promote` is skipped, and its
callback can be cut off). The failure callback still records a failure the operator never saw (e.g. a
task killed while waiting). Either way the version says so (jobs.registry.record_approval), so the registry
shows why a candidate that passed the gate did or did not become champion.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import DownstreamTasksSkipped

log = logging.getLogger(__name__)

# How long `approve` waits for an answer when the run does not say (its `approval_timeout_hours`).
APPROVAL_TIMEOUT_HOURS = 72.0


class RunApprovalOperator(ApprovalOperator):
    """Airflow's ApprovalOperator, waiting as long as the run's `approval_timeout_hours` param says (past it,
    the scheduler fails the task with HITLTimeoutError: nothing is promoted), and recording the outcome on
    the candidate version as it completes."""

    def execute(self, context: Any) -> Any:
        hours = float((context.get("params") or {}).get("approval_timeout_hours") or APPROVAL_TIMEOUT_HOURS)
        self.response_timeout = dt.timedelta(hours=hours)
        self.log.info("Waiting up to %s for an answer (approval_timeout_hours=%s)", self.response_timeout, hours)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        try:
            answer = super().execute_complete(context=context, event=event)
        except DownstreamTasksSkipped:  # Reject: how the Task SDK skips `promote`; the answer is the event's
            record_outcome(context, event, None)
            raise
        except Exception as exc:
            record_outcome(context, None, exc)
            raise
        record_outcome(context, answer, None)
        return answer


def record_outcome(context: dict[str, Any], answer: Any, error: BaseException | None) -> None:
    """The answer (or the error) on the version `train` registered; never raises (the answer stands either way)."""
    try:
        version = context["ti"].xcom_pull(task_ids="train")[0]["model_version"]
        from jobs.registry import approval_outcome, client, record_approval as record
        from jobs.settings import get_settings

        outcome, by, at, detail = approval_outcome(answer, error)
        settings = get_settings()
        record(client(settings.mlflow.tracking_uri), settings.mlflow.model_name, version, outcome, by, at,
               f"{detail}; airflow run {context.get('run_id', '')}")
    except Exception:  # noqa: BLE001 - recording must not change the task's outcome
        log.exception("could not record the approval on the candidate version")


def record_approval(context: dict[str, Any]) -> None:
    """on_failure_callback of `approve`: a failure the operator did not see itself (a timeout it did is recorded
    already, the same way)."""
    record_outcome(context, None, context.get("exception"))
