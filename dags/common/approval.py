"""What a person answered at delay_model_training's `approve`, recorded on the candidate version in MLflow.

The callbacks of the `approve` task (ApprovalOperator): on success the answer is in its result
(`chosen_options`, `responded_by_user`, `responded_at`): Approve or Reject; on failure the wait timed
out (response_timeout) or the task failed. Either way the version says so (jobs.registry.record_approval),
so the registry shows why a candidate that passed the gate did or did not become champion.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

log = logging.getLogger(__name__)

# How long `approve` waits for an answer when the run does not say (its `approval_timeout_hours`).
APPROVAL_TIMEOUT_HOURS = 72.0


class RunApprovalOperator(ApprovalOperator):
    """Airflow's ApprovalOperator, waiting as long as the run's `approval_timeout_hours` param says: past it,
    the scheduler fails the task (HITLTimeoutError), nothing is promoted and the version records `timed_out`."""

    def execute(self, context: Any) -> Any:
        hours = float((context.get("params") or {}).get("approval_timeout_hours") or APPROVAL_TIMEOUT_HOURS)
        self.response_timeout = dt.timedelta(hours=hours)
        self.log.info("Waiting up to %s for an answer (approval_timeout_hours=%s)", self.response_timeout, hours)
        return super().execute(context)


def record_approval(context: dict[str, Any]) -> None:
    """on_success_callback and on_failure_callback of `approve`: never raises (the answer stands either way)."""
    ti = context["ti"]
    try:
        version = ti.xcom_pull(task_ids="train")[0]["model_version"]
        answer = ti.xcom_pull(task_ids="approve") if context.get("exception") is None else None
        from jobs.registry import approval_outcome, client, record_approval as record
        from jobs.settings import get_settings

        outcome, by, at, detail = approval_outcome(answer, context.get("exception"))

        settings = get_settings()
        record(client(settings.mlflow.tracking_uri), settings.mlflow.model_name, version, outcome, by, at,
               f"{detail}; airflow run {context.get('run_id', '')}")
    except Exception:  # noqa: BLE001 - a callback must not change the task's outcome
        log.exception("could not record the approval on the candidate version")
