"""The `kubernetes` runner's operator, imported only when settings choose that runner.

Kept apart from operators.py so that local DAG parsing does not pay for the
Kubernetes client import.
"""
from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException

from common.operators import AssetEventFn, StepResultsMixin, container_exit_code, raise_for_exit_code


class PodStepOperator(StepResultsMixin, KubernetesPodOperator):
    """Run a step in a Kubernetes pod (the `kubernetes` runner)."""

    def __init__(self, *, step: str, asset_events: AssetEventFn | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.asset_events = asset_events

    def execute(self, context: Any) -> Any:
        result = super().execute(context)
        results = result if isinstance(result, list) else ([result] if result else [])
        return self.publish_results(context, results)

    def cleanup(self, pod, remote_pod, xcom_result=None, context=None) -> None:  # type: ignore[override]
        try:
            super().cleanup(pod, remote_pod, xcom_result, context)
        except AirflowException as exc:
            code = container_exit_code(remote_pod, self.base_container_name)
            try:
                raise_for_exit_code(self.step, code, str(exc))
            except AirflowException as outcome:  # rejected or skipped, with the pod's message
                raise outcome from exc
            raise
