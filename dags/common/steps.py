"""The one factory for heavy steps: a DAG names the step, settings pick the runner.

    pipeline_step("validate_and_publish", step="ingest", arguments=["--ds", "{{ ds }}"])

`runner.kind: subprocess` (local) runs `python -m jobs.ingest --ds ...` in the
worker; `runner.kind: kubernetes` (production) runs the same command in a pod
with the pinned image, resources, service account and secrets by reference from
settings, or, for the Spark steps (`features`, `score`), as a SparkApplication
through the Spark operator (common/spark_operator.py). DAG files never branch on
the environment.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, XComArg

from common.config import settings, step_env
from common.operators import AssetEventFn, SubprocessStepOperator

# Which image and resource profile each step uses in Kubernetes.
STEP_PROFILE = {"ingest": "jobs", "publish": "jobs", "train": "trainer"}
# The resources of KubernetesPodOperator's XCom sidecar (it reads the step's result file).
XCOM_SIDECAR = "xcom_sidecar"
# Profiles whose pods ask for a GPU (runner.gpu: device, node selector, tolerations).
GPU_PROFILES = frozenset({"trainer"})


def pod_kwargs(step: str, task_id: str) -> dict[str, Any]:
    """KubernetesPodOperator arguments for a step, all from settings."""
    from kubernetes.client import models as k8s

    from airflow.providers.cncf.kubernetes.secret import Secret

    from common.pod_operator import pod_security

    runner = settings().runner
    profile = STEP_PROFILE.get(step, "jobs")
    resources = runner.resources.get(profile)
    sidecar = runner.resources.get(XCOM_SIDECAR)
    security = pod_security(runner.pod_security)
    env = {**step_env(), **security.env}
    requests = dict(resources.requests) if resources else {}
    limits = dict(resources.limits) if resources else {}
    gpu: dict[str, Any] = {}
    if profile in GPU_PROFILES:
        limits[runner.gpu.resource] = str(runner.gpu.count)  # extended resources: limit only (= request)
        gpu = {
            "node_selector": dict(runner.gpu.node_selector),
            "tolerations": [k8s.V1Toleration(**t.model_dump()) for t in runner.gpu.tolerations],
        }
    # No `name`: the operator names the pod after the full task id (group included), so the
    # three feeds' pods are told apart, plus a random suffix.
    return {
        "namespace": runner.namespace,
        "image": runner.images[profile],
        "image_pull_policy": runner.image_pull_policy,
        "service_account_name": runner.service_account,
        # Least privilege (runner.pod_security): a step never talks to the Kubernetes API, so
        # its pod mounts no token; the restricted Pod Security Standard's contexts, for the
        # step's container and KubernetesPodOperator's XCom sidecar alike; a read-only root
        # filesystem with emptyDir scratch (and the operator's own /airflow/xcom volume).
        "automount_service_account_token": False,
        "security_context": security.pod_context,
        "container_security_context": security.container_context,
        "xcom_sidecar_container_security_context": security.container_context,
        "volumes": security.volumes,
        "volume_mounts": security.volume_mounts,
        "env_vars": [k8s.V1EnvVar(name=k, value=v) for k, v in env.items()],
        "secrets": [Secret("env", ref.env, ref.secret, ref.key) for ref in runner.secret_env],
        "container_resources": k8s.V1ResourceRequirements(requests=requests or None, limits=limits or None),
        "xcom_sidecar_resources": k8s.V1ResourceRequirements(
            requests=dict(sidecar.requests) or None, limits=dict(sidecar.limits) or None) if sidecar else None,
        **gpu,
        "labels": {"app.kubernetes.io/part-of": "flight-delay-pipeline", "pipeline-step": step},
        "startup_timeout_seconds": runner.startup_timeout_s,
        "termination_message_policy": "FallbackToLogsOnError",
        "do_xcom_push": True,
        "get_logs": True,
        "on_finish_action": "delete_succeeded_pod",
        "in_cluster": True,
    }


def pipeline_step(
    task_id: str,
    *,
    step: str,
    arguments: Sequence[str] | XComArg = (),
    asset_events: AssetEventFn | None = None,
    **kwargs: Any,
) -> BaseOperator:
    """A task running `python -m jobs.<step> <arguments>` with the configured runner."""
    if settings().runner.kind == "kubernetes":
        from common.pod_operator import PodStepOperator
        from common.spark_operator import SPARK_STEPS, SparkStepOperator, spark_application_kwargs

        if step in SPARK_STEPS:
            return SparkStepOperator(
                task_id=task_id,
                step=step,
                arguments=arguments if isinstance(arguments, XComArg) else list(arguments),
                asset_events=asset_events,
                **spark_application_kwargs(step, task_id),
                **kwargs,
            )

        return PodStepOperator(
            task_id=task_id,
            step=step,
            cmds=["python", "-m", f"jobs.{step}"],
            # An XComArg (arguments made by an upstream task) is resolved when the task renders.
            arguments=arguments if isinstance(arguments, XComArg) else list(arguments),
            asset_events=asset_events,
            **pod_kwargs(step, task_id),
            **kwargs,
        )
    return SubprocessStepOperator(
        task_id=task_id, step=step, arguments=arguments, asset_events=asset_events, **kwargs
    )
