"""The `kubernetes` runner for Spark steps: a SparkApplication run by the Spark operator.

    SparkStepOperator(task_id="build_features", step="features", arguments=["--ds", "{{ ds }}"],
                      **spark_application_kwargs("features", "build_features"))

The application is config/spark/spark_application.yaml, rendered by Airflow with values
from settings (`runner.spark_application` and the rest of `runner`), then created by the
provider's SparkKubernetesOperator, which waits for the driver pod, follows its log and
fails the task if the driver fails. Imported only when settings choose that runner (as
pod_operator.py is), so local DAG parsing never loads the Kubernetes client.

Two things differ from a step in a plain pod (PodStepOperator):
- Results. The Spark operator's driver pod has no XCom sidecar, and a log is not a
  contract, so once the application has succeeded the results are read back from the lake
  by the step module itself: `jobs.<step>.lake_results(arguments, started_at)`.
- Rejections. Spark's PythonRunner ends the driver JVM with the Python process's exit
  code, so a step that rejects its input (exit 3, jobs/results.py) leaves the driver
  container terminated with 3. That is read from the driver pod once the application has
  failed, on either of the provider's failure paths (while waiting for the application to
  start, or after following the driver), and becomes StepRejected: fail, no retry.
  A failed application is kept (its pod and log are the evidence) until the Spark
  operator's time to live runs out; a succeeded one is deleted at once.
"""
from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
from collections.abc import Sequence
from typing import Any

from kubernetes.client import ApiClient, models as k8s

from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from airflow.providers.cncf.kubernetes.utils.container import get_container_termination_message
from airflow.providers.cncf.kubernetes.utils.pod_manager import PodPhase
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from common.config import settings, step_env
from common.operators import AssetEventFn, StepRejected, StepResultsMixin, container_exit_code, raise_for_exit_code
from common.pod_operator import PodSecurity, pod_security
from jobs.results import EXIT_REJECTED, EXIT_SKIPPED

# Steps that run as Spark applications with the kubernetes runner; every other step runs in a pod.
SPARK_STEPS = frozenset({"features", "score"})


def step_main_file(step: str) -> str:
    """The file that `python -m jobs.<step>` runs, relative to the folder holding `jobs`: what Spark's driver runs.

    Spark's PythonRunner runs a file, not a module: a step that is a package (jobs/features/)
    runs as its `__main__.py`, a plain module (jobs/score.py) as itself. Found the way `-m`
    finds it, without importing the step.
    """
    spec = importlib.util.find_spec(f"jobs.{step}")
    if spec is None:
        raise ValueError(f"no step module jobs.{step}")
    return f"jobs/{step}/__main__.py" if spec.submodule_search_locations is not None else f"jobs/{step}.py"


# The container Spark runs in each pod, as Spark names it when it reads a pod template.
POD_TEMPLATE_CONTAINERS = {"driver": "spark-kubernetes-driver", "executor": "spark-kubernetes-executor"}


def pod_template(role: str, security: PodSecurity) -> dict[str, Any]:
    """The pod template of the driver or the executors (the SparkApplication's `template`), as JSON.

    spark-submit starts each pod from it and keeps what it sets: the restricted Pod Security
    Standard's contexts, the scratch volumes, and whether the service-account token is mounted.
    Spark takes a mounted volume named spark-local-dir-* as its local dir (and sets
    SPARK_LOCAL_DIRS to it) instead of making one of its own.
    Only the driver needs the token (it creates its executors, as runner.spark_application's
    driver_service_account); executors never talk to the API server.
    """
    template = k8s.V1PodTemplateSpec(spec=k8s.V1PodSpec(
        automount_service_account_token=role == "driver",
        security_context=security.pod_context,
        containers=[k8s.V1Container(name=POD_TEMPLATE_CONTAINERS[role], security_context=security.container_context,
                                    volume_mounts=security.volume_mounts)],
        volumes=security.volumes,
    ))
    return ApiClient().sanitize_for_serialization(template)


def spark_application_kwargs(step: str, task_id: str) -> dict[str, Any]:
    """SparkStepOperator arguments for a step, all from settings.

    `application` holds the values the template reads as `task.application`. `task_id`
    is not used: as for pods, the operator names the application after the full task id
    (task group included), plus a random suffix.
    """
    current = settings()
    runner = current.runner
    spark_app = runner.spark_application
    security = pod_security(runner.pod_security, spark_app.local_dir)
    labels = {"app.kubernetes.io/part-of": "flight-delay-pipeline", "pipeline-step": step}
    spark_conf = dict(spark_app.conf)
    if current.lake.s3_endpoint_url:  # an S3-compatible store other than AWS
        spark_conf = {"spark.hadoop.fs.s3a.endpoint": current.lake.s3_endpoint_url,
                      "spark.hadoop.fs.s3a.path.style.access": "true", **spark_conf}
    application = {
        "namespace": runner.namespace,
        "image": runner.images[spark_app.image],
        "image_pull_policy": runner.image_pull_policy,
        "driver_service_account": spark_app.driver_service_account,
        "executor_service_account": runner.service_account,
        "driver_template": pod_template("driver", security),
        "executor_template": pod_template("executor", security),
        "spark_version": spark_app.spark_version,
        "driver": spark_app.driver.model_dump(),
        "executor": spark_app.executor.model_dump(),
        "time_to_live_s": spark_app.time_to_live_s,
        "spark_conf": spark_conf,
        "labels": labels,
        "env": {**step_env(), **security.env},  # the same as a step's pod
        "secret_env": [ref.model_dump() for ref in runner.secret_env],
    }
    return {
        "namespace": runner.namespace,
        # The template's text, not its path: Airflow looks a path up in the DAG folder only.
        "application_file": spark_app.template_path.read_text(),
        "application": application,
        "startup_timeout_seconds": runner.startup_timeout_s,
        "in_cluster": True,
        "get_logs": True,
        "log_events_on_failure": True,
        # To Airflow: push what execute returns (the lake results). See SparkStepOperator.execute.
        "do_xcom_push": True,
        # execute reads the results after the application; a deferred task would skip that.
        "deferrable": False,
    }


class SparkStepOperator(StepResultsMixin, SparkKubernetesOperator):
    """Run a Spark step as a SparkApplication (the `kubernetes` runner)."""

    template_fields: Sequence[str] = (*SparkKubernetesOperator.template_fields, "arguments")
    template_fields_renderers = {**SparkKubernetesOperator.template_fields_renderers, "application_file": "yaml"}

    def __init__(
        self,
        *,
        step: str,
        application: dict[str, Any],
        arguments: Sequence[str] | Any = (),
        asset_events: AssetEventFn | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.application = application
        self.arguments = arguments  # a list, or an XComArg resolved when the task renders
        self.asset_events = asset_events

    @property
    def main_file(self) -> str:
        """The step's main file under the jobs image's working directory (the template's mainApplicationFile)."""
        return step_main_file(self.step)

    def step_arguments(self) -> list[str]:
        """The step's CLI arguments, as rendered."""
        return [str(argument) for argument in self.arguments]

    def manage_template_specs(self) -> dict[str, Any]:
        """The provider's template body (from the rendered application file), with the step's arguments."""
        body = super().manage_template_specs()
        body["spark"].setdefault("spec", {})["arguments"] = self.step_arguments()
        return body

    def execute(self, context: Any) -> list[dict[str, Any]]:
        started_at = dt.datetime.now(dt.timezone.utc)
        # do_xcom_push means two things. To Airflow: push the return value (wanted: the results).
        # To KubernetesPodOperator: read /airflow/xcom/return.json through a sidecar, which the
        # Spark operator's driver pod does not have, so off while the application runs.
        push, self.do_xcom_push = self.do_xcom_push, False
        try:
            super().execute(context)
        except AirflowException as exc:
            if not isinstance(exc, (StepRejected, AirflowSkipException)):
                self._raise_if_rejected(exc)
            raise
        finally:
            self.do_xcom_push = push
        return self.publish_results(context, self.lake_results(started_at))

    def lake_results(self, started_at: dt.datetime) -> list[dict[str, Any]]:
        """What the step wrote, read from the lake by the step module (`lake_results`), if it can."""
        module = importlib.import_module(f"jobs.{self.step}")
        read = getattr(module, "lake_results", None)
        if read is None:
            self.log.warning("jobs.%s has no lake_results: no results, no asset events", self.step)
            return []
        return list(read(self.step_arguments(), started_at))

    def _raise_if_rejected(self, exc: AirflowException) -> None:
        """StepRejected (exit 3) or a skip (exit 4), from the driver's exit code; a failed application is
        kept, so its pod is there."""
        driver = self._driver_pod()
        code = container_exit_code(driver, self.BASE_CONTAINER_NAME)
        if code in (EXIT_REJECTED, EXIT_SKIPPED):
            message = get_container_termination_message(driver, self.BASE_CONTAINER_NAME) or str(exc)
            try:
                raise_for_exit_code(self.step, code, message)
            except AirflowException as outcome:
                raise outcome from exc

    def _driver_pod(self) -> k8s.V1Pod | None:
        """The driver pod as the API server has it now, or None (never created, or unreadable)."""
        if not self.name:
            return None
        # The Spark operator's name for it; also what the provider waits on and reattaches to.
        name = f"{self.name}-driver"
        try:
            return self.client.read_namespaced_pod(name, self.namespace)
        except Exception as error:  # best effort: never hide the failure being handled
            self.log.warning("Could not read driver pod %s: %s", name, getattr(error, "reason", error))
            return None

    def process_pod_deletion(self, pod: k8s.V1Pod, *, reraise: bool = True) -> None:
        """Delete a succeeded application; keep a failed one for on-call (and for `_raise_if_rejected`)."""
        phase = pod.status.phase if pod is not None and pod.status else None
        if pod is not None and phase != PodPhase.SUCCEEDED:
            self.log.info("Keeping the %s Spark application of driver %s", phase, pod.metadata.name)
            return
        super().process_pod_deletion(pod, reraise=reraise)
