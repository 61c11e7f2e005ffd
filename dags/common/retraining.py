"""Monitoring's hand-over to training: one task that triggers `delay_model_training`, or skips.

The `monitor` step has already made the retraining decision (jobs/retrain.py) and put it, with the
training run's `conf`, in its XCom. This task reads it: retrain, and it triggers the training with
that conf; no, and it is *skipped* with the decision as its reason (shown in the UI and its log).
A separate branch task and an empty "no" task cost two scheduler hand-offs on every monitored day,
which a year's catch-up pays 365 times in order.
"""
from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk.exceptions import AirflowSkipException

from common.notify import first_result


class RetrainingTrigger(TriggerDagRunOperator):
    """Trigger the training run monitoring decided on, with the monitor's `retrain_conf`; else skip."""

    ui_color = "#fbe9e7"

    def __init__(self, *, monitor_task_id: str = "monitor", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.monitor_task_id = monitor_task_id

    def execute(self, context: Any) -> Any:
        result = first_result(context["ti"].xcom_pull(task_ids=self.monitor_task_id))
        decision = str(result.get("decision") or "(no decision in the monitor's XCom)")
        if not result.get("retrain"):
            print(f"NO RETRAIN {decision}")
            raise AirflowSkipException(decision)
        print(f"RETRAIN {decision}")
        self.conf = result.get("retrain_conf") or {}
        return super().execute(context)
