"""Layer 3: the production runner. Steps become pods that Kubernetes accepts, built from settings only.

The DAG file runs with PIPELINE_ENV=production; each validate_and_publish task is
rendered for a scheduled run like a worker renders it (conftest.runtime_ti), then
KubernetesPodOperator's own `build_pod_request_obj` builds the V1Pod it would
send. `dry_run=True` skips the one label that needs a live API client (whether
the hook runs in-cluster); nothing else is left out. The pod is checked as the
JSON the API server receives, and read back into the Kubernetes models.

The cleanup tests need a Kubernetes API server, and none exists here: a small
recording stand-in takes the CoreV1Api's place (FakeCoreV1Api), so that the real
KubernetesPodOperator.cleanup runs unchanged above it.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import re
from typing import Any

import pytest
from kubernetes.client import ApiClient, models as k8s

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

DAG_ID = "flights_ingest"
FEEDS = ("schedule", "weather", "flights")
LOGICAL_DATE = dt.datetime(2013, 3, 1, tzinfo=dt.timezone.utc)
FLIGHT_DATE = {"schedule": "2013-03-01", "weather": "2013-03-01", "flights": "2013-02-28"}
# Values that exist only in the environment of the process that parses and renders
# the DAG: if one shows up in a pod or in the serialized DAG, a secret leaked.
SENTINELS = {
    "AWS_ACCESS_KEY_ID": "AKIA-SENTINEL-NOT-FOR-PODS",
    "AWS_SECRET_ACCESS_KEY": "sentinel-secret-access-key-not-for-pods",
    "MLFLOW_TRACKING_TOKEN": "sentinel-mlflow-token-not-for-pods",
}
# DNS-1123 label (a pod name is a subdomain, but Airflow keeps it to one label)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@pytest.fixture
def settings(monkeypatch):
    from jobs.settings import get_settings

    monkeypatch.setenv("PIPELINE_ENV", "production")
    return get_settings()


@pytest.fixture
def dag(load_dag, monkeypatch):
    for name, value in SENTINELS.items():
        monkeypatch.setenv(name, value)
    return load_dag(DAG_ID, "production")


def render_pod(dag, runtime_ti, feed: str) -> tuple[Any, k8s.V1Pod, dict[str, Any]]:
    _, context = runtime_ti(dag, f"{feed}.validate_and_publish", LOGICAL_DATE)
    operator = context["task"]
    pod = operator.build_pod_request_obj(context, dry_run=True)
    return operator, pod, ApiClient().sanitize_for_serialization(pod)


def base_container(manifest: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in manifest["spec"]["containers"] if c["name"] == "base"]
    return container


class _JsonResponse:
    """What ApiClient.deserialize reads: the body of an API server response."""

    def __init__(self, body: dict[str, Any]):
        self.data = json.dumps(body)


def test_steps_run_as_pod_step_operators(dag):
    from common.pod_operator import PodStepOperator

    for feed in FEEDS:
        task = dag.get_task(f"{feed}.validate_and_publish")
        assert isinstance(task, PodStepOperator) and isinstance(task, KubernetesPodOperator)
        assert task.step == "ingest"
    # The sensors stay in the scheduler's world: no pod per poke.
    assert type(dag.get_task("flights.wait_for_landing")).__name__ == "LakeObjectSensor"


@pytest.mark.parametrize("feed", FEEDS)
def test_pod_is_a_valid_kubernetes_pod(dag, runtime_ti, feed):
    _, pod, manifest = render_pod(dag, runtime_ti, feed)
    assert manifest["apiVersion"] == "v1" and manifest["kind"] == "Pod"
    # Read back into the models the API client uses: required fields are checked
    # (client-side validation), and a misspelt or misplaced key would be dropped,
    # so the round trip must give back exactly the same manifest.
    again = ApiClient().deserialize(_JsonResponse(manifest), "V1Pod")
    assert isinstance(again, k8s.V1Pod)
    assert ApiClient().sanitize_for_serialization(again) == manifest
    assert DNS_LABEL.match(manifest["metadata"]["name"]), manifest["metadata"]["name"]
    assert manifest["spec"]["restartPolicy"] == "Never", "a failed step is retried by Airflow, not by the kubelet"


@pytest.mark.parametrize("feed", FEEDS)
def test_pod_runs_the_ingest_cli_for_the_flight_date(dag, runtime_ti, feed):
    _, _, manifest = render_pod(dag, runtime_ti, feed)
    container = base_container(manifest)
    assert container["command"] == ["python", "-m", "jobs.ingest"]
    assert container["args"] == ["--ds", FLIGHT_DATE[feed], "--feed", feed]


@pytest.mark.parametrize("feed", FEEDS)
def test_pod_image_is_the_pinned_jobs_image(dag, runtime_ti, settings, feed):
    _, _, manifest = render_pod(dag, runtime_ti, feed)
    image = base_container(manifest)["image"]
    assert image == settings.runner.images["jobs"]
    tag = image.rpartition("/")[2].partition(":")[2]
    assert "@sha256:" in image or (tag and tag != "latest"), f"{image} is not pinned"
    assert base_container(manifest)["imagePullPolicy"] == settings.runner.image_pull_policy


@pytest.mark.parametrize("feed", FEEDS)
def test_pod_environment_and_secrets_by_reference(dag, runtime_ti, settings, feed):
    _, _, manifest = render_pod(dag, runtime_ti, feed)
    env = {item["name"]: item for item in base_container(manifest)["env"]}
    assert env["PIPELINE_ENV"] == {"name": "PIPELINE_ENV", "value": "production"}
    assert env["LAKE_ROOT"]["value"] == settings.lake_root
    assert env["LAKE_ROOT"]["value"].startswith("s3://")
    assert env["MLFLOW_TRACKING_URI"]["value"] == settings.mlflow.tracking_uri
    assert settings.runner.secret_env, "production reads its credentials from Secrets"
    for ref in settings.runner.secret_env:
        assert env[ref.env] == {
            "name": ref.env, "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}},
        }


@pytest.mark.parametrize("feed", FEEDS)
def test_no_secret_value_anywhere_in_the_pod(dag, runtime_ti, settings, feed):
    _, _, manifest = render_pod(dag, runtime_ti, feed)
    secret_names = {ref.env for ref in settings.runner.secret_env} | {"AWS_SECRET_ACCESS_KEY"}

    def env_entries(node: Any):
        if isinstance(node, dict):
            if "name" in node and ("value" in node or "valueFrom" in node):
                yield node
            for value in node.values():
                yield from env_entries(value)
        elif isinstance(node, list):
            for value in node:
                yield from env_entries(value)

    literal = [entry for entry in env_entries(manifest) if entry["name"] in secret_names and "value" in entry]
    assert literal == [], f"secrets as literal values: {literal}"
    text = json.dumps(manifest)
    for name, value in SENTINELS.items():
        assert value not in text, f"{name} of the parsing process leaked into the pod"
    assert "envFrom" not in base_container(manifest) or base_container(manifest)["envFrom"] == []


def test_no_secret_value_in_the_serialized_dag(dag):
    """The serialized DAG is stored in the metadata DB and shown in the UI."""
    from airflow.serialization.serialized_objects import DagSerialization

    text = json.dumps(DagSerialization.to_dict(dag), default=str)
    for name, value in SENTINELS.items():
        assert value not in text, f"{name} leaked into the serialized DAG"


@pytest.mark.parametrize("feed", FEEDS)
def test_pod_resources_account_and_labels_come_from_settings(dag, runtime_ti, settings, feed):
    operator, _, manifest = render_pod(dag, runtime_ti, feed)
    resources = settings.runner.resources["jobs"]
    assert base_container(manifest)["resources"] == {
        "requests": dict(resources.requests), "limits": dict(resources.limits),
    }
    assert resources.requests and resources.limits, "a pod without requests and limits is unschedulable or unbounded"
    assert manifest["metadata"]["namespace"] == settings.runner.namespace
    assert manifest["spec"]["serviceAccountName"] == settings.runner.service_account
    labels = manifest["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "flight-delay-pipeline"
    assert labels["pipeline-step"] == "ingest"
    # Added by KubernetesPodOperator from the task instance: how it finds its pod again.
    assert labels["dag_id"] == DAG_ID and labels["task_id"] == f"{feed}.validate_and_publish"
    assert labels["try_number"] == "1"
    assert operator.startup_timeout_seconds == settings.runner.startup_timeout_s
    assert base_container(manifest)["terminationMessagePolicy"] == "FallbackToLogsOnError"


@pytest.mark.parametrize("feed", FEEDS)
def test_step_results_come_back_through_the_xcom_sidecar(dag, runtime_ti, feed):
    """jobs.results writes /airflow/xcom/return.json; the operator reads it through KPO's sidecar."""
    operator, _, manifest = render_pod(dag, runtime_ti, feed)
    assert operator.do_xcom_push
    assert {"mountPath": "/airflow/xcom", "name": "xcom"} in base_container(manifest)["volumeMounts"]
    assert "airflow-xcom-sidecar" in [c["name"] for c in manifest["spec"]["containers"]]


def test_pod_assets_point_at_the_s3_lake(dag, settings):
    for feed in FEEDS:
        (outlet,) = dag.get_task(f"{feed}.validate_and_publish").outlets
        assert (outlet.name, outlet.uri) == (f"raw_{feed}", f"{settings.lake_root}/raw/{feed}")


# container_exit_code ------------------------------------------------------------------------------

def container_status(name: str, state: k8s.V1ContainerState) -> k8s.V1ContainerStatus:
    return k8s.V1ContainerStatus(
        name=name, image="ghcr.io/flight-delay/jobs:0.1.0", image_id="", ready=False, restart_count=0, state=state,
    )


def terminated(exit_code: int, message: str | None = None) -> k8s.V1ContainerState:
    return k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code, message=message))


def pod_with(phase: str, *statuses: k8s.V1ContainerStatus) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="ingest-validate-and-publish-abc123", namespace="ml-pipelines"),
        status=k8s.V1PodStatus(phase=phase, container_statuses=list(statuses)),
    )


def test_container_exit_code():
    from common.operators import container_exit_code

    sidecar = container_status("airflow-xcom-sidecar", k8s.V1ContainerState(running=k8s.V1ContainerStateRunning()))
    assert container_exit_code(pod_with("Failed", sidecar, container_status("base", terminated(3))), "base") == 3
    assert container_exit_code(pod_with("Succeeded", container_status("base", terminated(0))), "base") == 0
    running = container_status("base", k8s.V1ContainerState(running=k8s.V1ContainerStateRunning()))
    assert container_exit_code(pod_with("Running", running), "base") is None
    assert container_exit_code(pod_with("Failed", container_status("base", terminated(3))), "other") is None
    assert container_exit_code(pod_with("Pending"), "base") is None
    assert container_exit_code(k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="p")), "base") is None
    assert container_exit_code(None, "base") is None


# cleanup: exit code 3 fails at once, anything else retries ---------------------------------------

class FakeCoreV1Api:
    """Stands in for the Kubernetes API server, which tests do not have: records the calls cleanup makes.

    It knows the pods it is given; any call other than the three below fails the
    test, so a change in what cleanup asks of the cluster shows up here.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, Any]] = []
        self.pods: dict[tuple[str, str], k8s.V1Pod] = {}

    def read_namespaced_pod(self, name: str, namespace: str, **_: Any) -> k8s.V1Pod:
        self.calls.append(("read", name, namespace, None))
        return self.pods[(namespace, name)]

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **_: Any) -> None:
        self.calls.append(("patch", name, namespace, body))

    def delete_namespaced_pod(self, name: str, namespace: str, body: Any = None, **_: Any) -> None:
        self.calls.append(("delete", name, namespace, body))

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected Kubernetes API call: {name}")


@pytest.fixture
def step_operator(dag, runtime_ti):
    """The worker's rendered operator, the pod it sends, and the stand-in API server."""
    operator, pod, _ = render_pod(dag, runtime_ti, "flights")
    api = FakeCoreV1Api()
    operator.__dict__["client"] = api  # KubernetesPodOperator.client is a cached_property over the hook
    return operator, pod, api


def cleanup(operator, pod: k8s.V1Pod, phase: str, base_state: k8s.V1ContainerState) -> None:
    """What KubernetesPodOperator does once the pod has finished: the API server now reports its status."""
    remote = copy.deepcopy(pod)
    remote.status = k8s.V1PodStatus(phase=phase, container_statuses=[
        container_status("base", base_state),
        container_status("airflow-xcom-sidecar", k8s.V1ContainerState(running=k8s.V1ContainerStateRunning())),
    ])
    operator.client.pods[(pod.metadata.namespace, pod.metadata.name)] = remote
    # context=None: with a context, a failed pod's partial XCom is pushed first,
    # which needs the worker's supervisor; nothing else in cleanup reads it.
    operator.cleanup(pod=pod, remote_pod=remote, xcom_result=None, context=None)


def test_rejected_input_fails_at_once(step_operator):
    from common.operators import StepRejected

    operator, pod, api = step_operator
    message = "flights 2013-02-28 rejected: expect_column_values_to_be_unique(flight) failed"
    with pytest.raises(StepRejected) as caught:
        cleanup(operator, pod, "Failed", terminated(3, message))
    assert isinstance(caught.value, AirflowFailException), "AirflowFailException: no retry"
    assert message in str(caught.value), "the pod's termination message names the failed checks"
    assert isinstance(caught.value.__cause__, AirflowException)
    # The real cleanup ran: the pod is marked as checked and kept for inspection (delete_succeeded_pod).
    assert [call[0] for call in api.calls if call[0] != "read"] == ["patch"]


@pytest.mark.parametrize("exit_code", [1, 2, 137])
def test_other_failures_stay_retryable(step_operator, exit_code):
    from common.operators import StepRejected

    operator, pod, _ = step_operator
    with pytest.raises(AirflowException) as caught:
        cleanup(operator, pod, "Failed", terminated(exit_code))
    assert not isinstance(caught.value, (AirflowFailException, StepRejected)), "these must retry with backoff"


def test_success_deletes_the_pod(step_operator):
    operator, pod, api = step_operator
    cleanup(operator, pod, "Succeeded", terminated(0))
    changes = [call[:3] for call in api.calls if call[0] != "read"]
    assert changes == [("delete", pod.metadata.name, "ml-pipelines")]


def test_each_feed_gets_its_own_pod_name(dag, runtime_ti):
    """Pods are named after the full task id, so on-call can tell the feeds' pods apart."""
    names = {feed: render_pod(dag, runtime_ti, feed)[1].metadata.name for feed in ("schedule", "weather", "flights")}
    for feed, name in names.items():
        assert name.startswith(f"{feed}-validate-and-publish"), (feed, name)
        assert DNS_LABEL.match(name), name


# The GPU step: delay_model_training's `train` -------------------------------------------------

@pytest.fixture
def train_pod(load_dag, monkeypatch, settings) -> dict[str, Any]:
    """The pod of delay_model_training.train as the real operator builds it (arguments as rendered)."""
    for name, value in SENTINELS.items():
        monkeypatch.setenv(name, value)
    training = load_dag("delay_model_training", "production")
    operator = copy.copy(training.get_task("train"))
    assert isinstance(operator, KubernetesPodOperator)
    operator.arguments = ["--start", "2013-01-01", "--end", "2013-11-30", "--holdout-start", "2013-12-01",
                          "--holdout-end", "2013-12-31", "--family", "torch_mlp"]
    pod = operator.build_pod_request_obj(None, dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


def test_training_pod_asks_for_a_gpu_where_there_is_one(train_pod, settings):
    gpu = settings.runner.gpu
    container = base_container(train_pod)
    limits = container["resources"]["limits"]
    assert limits[gpu.resource] == str(gpu.count) == "1"
    assert container["resources"]["requests"] == dict(settings.runner.resources["trainer"].requests)
    assert train_pod["spec"]["nodeSelector"] == dict(gpu.node_selector)
    assert train_pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    # Round trip through the Kubernetes models: what the API server would accept.
    pod = ApiClient().deserialize(_JsonResponse(train_pod), "V1Pod")
    assert pod.spec.tolerations[0].key == "nvidia.com/gpu"


def test_training_pod_image_command_and_secrets(train_pod, settings):
    container = base_container(train_pod)
    image = settings.runner.images["trainer"]
    assert container["image"] == image and not image.endswith(":latest") and ":" in image.rsplit("/", 1)[-1]
    assert container["command"] == ["python", "-m", "jobs.train"] and "--family" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == settings.mlflow.tracking_uri
    for ref in settings.runner.secret_env:
        assert env[ref.env] == {"name": ref.env, "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}}
    text = json.dumps(train_pod)
    assert not [value for value in SENTINELS.values() if value in text], "a secret value leaked into the pod"


def test_non_gpu_steps_do_not_ask_for_a_gpu(dag, runtime_ti, settings):
    _, _, manifest = render_pod(dag, runtime_ti, "schedule")
    assert settings.runner.gpu.resource not in (base_container(manifest)["resources"].get("limits") or {})
    assert not manifest["spec"].get("tolerations") and not manifest["spec"].get("nodeSelector")


# Least privilege: the restricted Pod Security Standard, no token, read-only root with scratch --------

@pytest.mark.parametrize("feed", FEEDS)
def test_pod_runs_least_privileged(dag, runtime_ti, settings, feed):
    _, _, manifest = render_pod(dag, runtime_ti, feed)
    security = settings.runner.pod_security
    spec = manifest["spec"]
    assert spec["automountServiceAccountToken"] is False, "a step never calls the Kubernetes API"
    assert spec["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": security.run_as_user, "runAsGroup": security.run_as_group,
        "fsGroup": security.fs_group, "seccompProfile": {"type": "RuntimeDefault"}}
    for container in spec["containers"]:  # the step's and the XCom sidecar
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True, "runAsNonRoot": True}, container["name"]


@pytest.mark.parametrize("feed", FEEDS)
def test_pod_writes_only_to_its_scratch_volumes(dag, runtime_ti, settings, feed):
    _, _, manifest = render_pod(dag, runtime_ti, feed)
    container = base_container(manifest)
    volumes = {volume["name"]: volume for volume in manifest["spec"]["volumes"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    env = {item["name"]: item.get("value") for item in container["env"]}
    scratch = settings.runner.pod_security.scratch
    assert {v.mount_path for v in scratch} >= {"/tmp", "/home/pipeline"}
    for volume in scratch:
        assert volumes[volume.name] == {"name": volume.name, "emptyDir": {"sizeLimit": volume.size_limit}}
        assert mounts[volume.name] == volume.mount_path
    assert env["HOME"] == "/home/pipeline" and env["TMPDIR"] == "/tmp"
    # Besides scratch, only the operator's XCom emptyDir is writable.
    assert set(volumes) == {v.name for v in scratch} | {"xcom"} and "emptyDir" in volumes["xcom"]


def test_training_pod_runs_least_privileged(train_pod, settings):
    assert train_pod["spec"]["automountServiceAccountToken"] is False
    assert train_pod["spec"]["securityContext"]["runAsUser"] == settings.runner.pod_security.run_as_user
    container = base_container(train_pod)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/home/pipeline"}


@pytest.mark.parametrize("feed", FEEDS)
def test_xcom_sidecar_is_bounded_by_settings(dag, runtime_ti, settings, feed):
    _, _, manifest = render_pod(dag, runtime_ti, feed)
    (sidecar,) = [c for c in manifest["spec"]["containers"] if c["name"] == "airflow-xcom-sidecar"]
    wanted = settings.runner.resources["xcom_sidecar"]
    assert sidecar["resources"] == {"requests": dict(wanted.requests), "limits": dict(wanted.limits)}
    assert wanted.limits, "a container without limits is unbounded"
