"""The `kubernetes` runner's operator, imported only when settings choose that runner.

Kept apart from operators.py so that local DAG parsing does not pay for the
Kubernetes client import.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes.client import models as k8s

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.xcom_sidecar import PodDefaults
from airflow.sdk.exceptions import AirflowException

from common.operators import AssetEventFn, StepResultsMixin, container_exit_code, raise_for_exit_code
from jobs.settings import PodSecuritySettings, ScratchVolume


@dataclass(frozen=True)
class PodSecurity:
    """What makes a step's pod admissible under the "restricted" Pod Security Standard, from settings.

    The same for a step's pod (PodStepOperator) and for a Spark driver or executor (the
    SparkApplication's pod templates): pod and container security contexts, and the
    emptyDir volumes that are the only writable places once the root filesystem is read-only,
    with the variables (HOME, TMPDIR) that point programs at them.
    """

    pod_context: k8s.V1PodSecurityContext
    container_context: k8s.V1SecurityContext
    volumes: list[k8s.V1Volume]
    volume_mounts: list[k8s.V1VolumeMount]
    env: dict[str, str]


def pod_security(security: PodSecuritySettings, *extra_scratch: ScratchVolume) -> PodSecurity:
    """The least-privilege pieces of a pod: runner.pod_security, plus any scratch of the pod's own (Spark's local dir)."""
    scratch = (*security.scratch, *extra_scratch)
    return PodSecurity(
        pod_context=k8s.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=security.run_as_user, run_as_group=security.run_as_group,
            fs_group=security.fs_group, seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
        container_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False, capabilities=k8s.V1Capabilities(drop=["ALL"]),
            read_only_root_filesystem=True, run_as_non_root=True),
        volumes=[k8s.V1Volume(name=v.name, empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=v.size_limit))
                 for v in scratch],
        volume_mounts=[k8s.V1VolumeMount(name=v.name, mount_path=v.mount_path) for v in scratch],
        env={v.env: v.mount_path for v in scratch if v.env},
    )


class PodStepOperator(StepResultsMixin, KubernetesPodOperator):
    """Run a step in a Kubernetes pod (the `kubernetes` runner)."""

    def __init__(self, *, step: str, asset_events: AssetEventFn | None = None,
                 xcom_sidecar_resources: k8s.V1ResourceRequirements | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.asset_events = asset_events
        self.xcom_sidecar_resources = xcom_sidecar_resources

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """The operator's pod, with the XCom sidecar bounded too (runner.resources.xcom_sidecar).

        KubernetesPodOperator takes the sidecar's resources only from its connection's extras,
        and by default gives it requests without limits.
        """
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        for container in pod.spec.containers:
            if container.name == PodDefaults.SIDECAR_CONTAINER_NAME and self.xcom_sidecar_resources is not None:
                container.resources = self.xcom_sidecar_resources
        return pod

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
