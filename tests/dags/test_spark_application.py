"""Layer 3: the production runner for Spark steps. A step becomes a SparkApplication the Spark operator accepts.

A small DAG runs SparkStepOperator with PIPELINE_ENV=production settings; its task is
rendered for a scheduled run like a worker renders it (conftest.runtime_ti), then
SparkKubernetesOperator's own code builds the SparkApplication and sends it: the Kubernetes
API server is the only thing replaced, by small recording stand-ins (FakeCoreV1Api,
FakeCustomObjectsApi), as in test_pod_step_operator.py. What the tests read is the body
the operator hands to `create_namespaced_custom_object`, i.e. what the API server receives.

What needs a cluster and is not checked here: that the Spark operator's CRD schema and
webhook accept the body, that the jobs image starts as a Spark driver and executor, and
that S3A reaches the bucket.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, models as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags"
DAG_ID = "spark_step_under_test"
TASK_ID = "build_features"
LOGICAL_DATE = dt.datetime(2013, 3, 1, tzinfo=dt.timezone.utc)
ARGUMENTS = ["--ds", "{{ ds }}", "--days", "1"]
RENDERED_ARGUMENTS = ["--ds", "2013-03-01", "--days", "1"]
DRIVER = "spark-kubernetes-driver"
# Values that exist only in the environment of the process that parses and renders the
# DAG: if one shows up in the application or the serialized DAG, a secret leaked.
SENTINELS = {
    "AWS_ACCESS_KEY_ID": "AKIA-SENTINEL-NOT-FOR-SPARK",
    "AWS_SECRET_ACCESS_KEY": "sentinel-secret-access-key-not-for-spark",
    "MLFLOW_TRACKING_TOKEN": "sentinel-mlflow-token-not-for-spark",
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
SPARK_SIZE = re.compile(r"^[0-9]+[kmgt]$")
# The file Spark's driver runs for each kind of step: a package step's __main__.py, a module step's own file.
STEP_MAIN_FILES = {"features": "jobs/features/__main__.py", "score": "jobs/score.py"}
IMAGE_WORKDIR = "local:///opt/pipeline/"


@pytest.fixture
def settings(monkeypatch):
    from jobs.settings import get_settings

    monkeypatch.setenv("PIPELINE_ENV", "production")
    return get_settings()


@pytest.fixture
def build_dag(monkeypatch):
    """A DAG of Spark steps built with production settings (and any PIPELINE__* overrides given)."""
    monkeypatch.syspath_prepend(str(DAGS_DIR))
    for name, value in SENTINELS.items():
        monkeypatch.setenv(name, value)

    def build(xcom_arguments: bool = False, step: str = "features", **environ: str) -> Any:
        from airflow.sdk import DAG, CronTriggerTimetable, task

        from common.config import start_date
        from common.spark_operator import SparkStepOperator, spark_application_kwargs

        monkeypatch.setenv("PIPELINE_ENV", "production")
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
        with DAG(DAG_ID, schedule=CronTriggerTimetable("0 0 * * *", timezone="UTC"), start_date=start_date(),
                 catchup=False) as dag:
            if xcom_arguments:
                @task
                def plan(ds: str | None = None) -> list[str]:
                    return ["--ds", str(ds), "--days", "1"]

                arguments: Any = plan()
            else:
                arguments = ARGUMENTS
            SparkStepOperator(task_id=TASK_ID, step=step, arguments=arguments,
                              **spark_application_kwargs(step, TASK_ID))
        return dag

    return build


@pytest.fixture
def dag(build_dag):
    return build_dag()


# Stand-ins for the Kubernetes API server -------------------------------------------------------

class FakeCoreV1Api:
    """Stands in for the core API: knows the pods it is given, records what changes them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.pods: dict[str, k8s.V1Pod] = {}

    def list_namespaced_pod(self, namespace: str, **_: Any) -> k8s.V1PodList:
        self.calls.append(("list", namespace))
        return k8s.V1PodList(items=[])  # no driver of an earlier try to reattach to

    def read_namespaced_pod(self, name: str, namespace: str, **_: Any) -> k8s.V1Pod:
        self.calls.append(("read", name))
        if name not in self.pods:
            raise ApiException(status=404, reason="Not Found")
        return self.pods[name]

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **_: Any) -> None:
        self.calls.append(("patch", name))

    def list_namespaced_event(self, namespace: str, **_: Any) -> k8s.CoreV1EventList:
        return k8s.CoreV1EventList(items=[])  # read for the log when a driver fails (log_events_on_failure)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected Kubernetes API call: {name}")


class FakeCustomObjectsApi:
    """Stands in for the SparkApplication API: records what is created and deleted, reports a state."""

    def __init__(self, state: str = "RUNNING", error: str | None = None) -> None:
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.state, self.error = state, error

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                        body: dict[str, Any], **_: Any) -> dict[str, Any]:
        assert (group, version, plural) == ("sparkoperator.k8s.io", "v1beta2", "sparkapplications")
        assert namespace == body["metadata"]["namespace"]
        # What the client sends: the body serialized to JSON.
        sent = json.loads(json.dumps(ApiClient().sanitize_for_serialization(body)))
        self.created.append(sent)
        return copy.deepcopy(sent)

    def get_namespaced_custom_object_status(self, **_: Any) -> dict[str, Any]:
        return {"status": {"applicationState": {"state": self.state, "errorMessage": self.error}}}

    def delete_namespaced_custom_object(self, name: str, **_: Any) -> None:
        self.deleted.append(name)


def rendered(dag, runtime_ti, task_id: str = TASK_ID) -> tuple[Any, dict[str, Any]]:
    _, context = runtime_ti(dag, task_id, LOGICAL_DATE)
    return context["task"], context


def connect(operator, core: FakeCoreV1Api, objects: FakeCustomObjectsApi) -> None:
    operator.__dict__["client"] = core  # cached_property over the hook
    operator.__dict__["custom_obj_api"] = objects


def submit(dag, runtime_ti, **environ: str) -> tuple[Any, dict[str, Any]]:
    """The SparkApplication the operator sends: its own code up to the API call (execute's first steps)."""
    operator, context = rendered(dag, runtime_ti)
    objects = FakeCustomObjectsApi()
    connect(operator, FakeCoreV1Api(), objects)
    operator.name = operator.create_job_name()
    operator._setup_spark_configuration(context)
    (body,) = objects.created
    return operator, body


@pytest.fixture
def application(dag, runtime_ti) -> dict[str, Any]:
    return submit(dag, runtime_ti)[1]


@pytest.fixture(params=sorted(STEP_MAIN_FILES))
def step_application(request, build_dag, runtime_ti) -> tuple[str, dict[str, Any]]:
    """(step, the SparkApplication sent for it), for a package step and a module step."""
    return request.param, submit(build_dag(step=request.param), runtime_ti)[1]


def env_of(application: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    entries = application["spec"][role]["env"]
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"duplicate {role} env vars: {names}"
    return {entry["name"]: entry for entry in entries}


class _JsonResponse:
    """What ApiClient.deserialize reads: the body of an API server response."""

    def __init__(self, body: Any):
        self.data = json.dumps(body)


# The operator ----------------------------------------------------------------------------------

def test_spark_step_is_a_spark_kubernetes_operator(dag):
    from common.spark_operator import SPARK_STEPS, SparkStepOperator

    task = dag.get_task(TASK_ID)
    assert isinstance(task, SparkStepOperator) and isinstance(task, SparkKubernetesOperator)
    assert task.step == "features" and not task.deferrable
    assert SPARK_STEPS == {"features", "score"}


def test_application_is_a_spark_application(application, settings):
    assert application["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    assert application["kind"] == "SparkApplication"
    metadata = application["metadata"]
    assert metadata["namespace"] == settings.runner.namespace
    # Named after the task id plus a random suffix: a retry is a new application.
    assert DNS_LABEL.match(metadata["name"]) and metadata["name"].startswith("build-features-"), metadata["name"]
    spec = application["spec"]
    assert (spec["type"], spec["mode"]) == ("Python", "cluster")
    assert spec["restartPolicy"] == {"type": "Never"}, "a failed step is retried by Airflow, not by the Spark operator"
    assert spec["timeToLiveSeconds"] == settings.runner.spark_application.time_to_live_s


def test_spark_version_is_the_images_pyspark(application, settings):
    constraints = (REPO_ROOT / "constraints.txt").read_text()
    (pinned,) = re.findall(r"^pyspark==(\S+)$", constraints, flags=re.MULTILINE)
    assert application["spec"]["sparkVersion"] == settings.runner.spark_application.spark_version == pinned


def test_image_is_the_pinned_jobs_image(application, settings):
    image = application["spec"]["image"]
    assert image == settings.runner.images["jobs"]
    tag = image.rpartition("/")[2].partition(":")[2]
    assert "@sha256:" in image or (tag and tag != "latest"), f"{image} is not pinned"
    assert application["spec"]["imagePullPolicy"] == settings.runner.image_pull_policy
    assert "image" not in application["spec"]["driver"] and "image" not in application["spec"]["executor"]


def test_driver_runs_the_step_cli(step_application):
    step, application = step_application
    spec = application["spec"]
    assert spec["mainApplicationFile"] == IMAGE_WORKDIR + STEP_MAIN_FILES[step]
    assert spec["arguments"] == RENDERED_ARGUMENTS
    # local:// is a path in the image: docker/jobs.Dockerfile puts the package there.
    dockerfile = (REPO_ROOT / "docker" / "jobs.Dockerfile").read_text()
    assert re.search(r"^WORKDIR /opt/pipeline$", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^COPY jobs \./jobs$", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^RUN pip install .*--no-deps .*-e \.$", dockerfile, flags=re.MULTILINE)  # jobs is installed
    assert (REPO_ROOT / STEP_MAIN_FILES[step]).is_file()


def test_step_file_runs_as_the_step_module(step_application, tmp_path):
    """Spark runs `python <mainApplicationFile> ARGS`; with the pods' environment that is `python -m jobs.<step> ARGS`.

    For a module step (jobs/score.py) and a package step (jobs/features/__main__.py) alike.
    """
    step, application = step_application
    main_file = application["spec"]["mainApplicationFile"]
    assert main_file.startswith(IMAGE_WORKDIR)
    dockerfile = (REPO_ROOT / "docker" / "jobs.Dockerfile").read_text()
    (major, minor) = map(int, re.search(r"^FROM python:(\d+)\.(\d+)", dockerfile, flags=re.MULTILINE).groups())
    assert (major, minor) >= (3, 11), "PYTHONSAFEPATH needs Python 3.11"
    environ = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONSAFEPATH": "1"}
    as_file = subprocess.run([sys.executable, str(REPO_ROOT / main_file.removeprefix(IMAGE_WORKDIR)), "--help"],
                             cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120)
    as_module = subprocess.run([sys.executable, "-m", f"jobs.{step}", "--help"], cwd=tmp_path,
                               env=environ, capture_output=True, text=True, timeout=120)
    assert as_file.returncode == 0, as_file.stderr
    assert as_file.stdout == as_module.stdout and "--ds" in as_file.stdout


def test_sizes_and_account_come_from_settings(application, settings):
    spark_app = settings.runner.spark_application
    driver, executor = application["spec"]["driver"], application["spec"]["executor"]
    for role, size in (("driver", spark_app.driver), ("executor", spark_app.executor)):
        pod = application["spec"][role]
        assert pod["cores"] == size.cores and isinstance(pod["cores"], int)
        assert pod["memory"] == size.memory and SPARK_SIZE.match(pod["memory"])
        assert pod["coreLimit"] == size.core_limit
        assert parse_quantity(pod["coreLimit"]) >= pod["cores"]
    assert executor["instances"] == spark_app.executor.instances
    assert driver["serviceAccount"] == settings.runner.spark_application.driver_service_account
    assert executor["serviceAccount"] == settings.runner.service_account != driver["serviceAccount"]


def test_env_vars_are_kubernetes_env_vars_with_secrets_by_reference(application, settings):
    for role in ("driver", "executor"):
        env = env_of(application, role)
        for entry in env.values():
            # Read back into the client's model: a misspelt or misplaced key would be dropped,
            # so the round trip must give back the same entry.
            model = ApiClient().deserialize(_JsonResponse(entry), "V1EnvVar")
            assert isinstance(model, k8s.V1EnvVar)
            assert ApiClient().sanitize_for_serialization(model) == entry
            assert ("value" in entry) != ("valueFrom" in entry), entry
        assert env["PIPELINE_ENV"] == {"name": "PIPELINE_ENV", "value": "production"}
        assert env["LAKE_ROOT"]["value"] == settings.lake_root and settings.lake_root.startswith("s3://")
        assert env["MLFLOW_TRACKING_URI"]["value"] == settings.mlflow.tracking_uri
        assert env["PYTHONSAFEPATH"]["value"] == "1"
        assert env["SPARK_APPLICATION_NAME"]["value"] == application["metadata"]["name"]  # added by the operator
        assert settings.runner.secret_env, "production reads its credentials from Secrets"
        for ref in settings.runner.secret_env:
            reference = {"secretKeyRef": {"name": ref.secret, "key": ref.key}}
            assert env[ref.env] == {"name": ref.env, "valueFrom": reference}
        assert not application["spec"][role].get("envFrom")


def test_no_secret_value_anywhere(dag, runtime_ti, application, settings):
    secret_names = {ref.env for ref in settings.runner.secret_env}
    literal = [entry for role in ("driver", "executor") for entry in env_of(application, role).values()
               if entry["name"] in secret_names and "value" in entry]
    assert literal == [], f"secrets as literal values: {literal}"
    operator, _ = rendered(dag, runtime_ti)
    from airflow.serialization.serialized_objects import DagSerialization

    texts = {"the application": json.dumps(application), "the rendered template": operator.application_file,
             "the serialized DAG": json.dumps(DagSerialization.to_dict(dag), default=str)}
    for where, text in texts.items():
        for name, value in SENTINELS.items():
            assert value not in text, f"{name} of the parsing process leaked into {where}"


def test_spark_conf_utc_and_s3a(application):
    conf = application["spec"]["sparkConf"]
    assert all(isinstance(value, str) for value in conf.values()), "sparkConf is a map of strings"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.driver.extraJavaOptions"] == conf["spark.executor.extraJavaOptions"] == "-Duser.timezone=UTC"
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith(".EnvironmentVariableCredentialsProvider")
    # The lake's URIs are s3://: the same S3A filesystem serves them.
    assert conf["spark.hadoop.fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    assert not any("secret" in key.lower() or "access.key" in key.lower() for key in conf), conf


def test_spark_conf_and_endpoint_from_settings(build_dag, runtime_ti):
    dag = build_dag(PIPELINE__RUNNER__SPARK_APPLICATION__CONF='{"spark.sql.adaptive.enabled": "true"}',
                    PIPELINE__LAKE__S3_ENDPOINT_URL="http://minio.storage.svc:9000")
    conf = submit(dag, runtime_ti)[1]["spec"]["sparkConf"]
    assert conf["spark.sql.adaptive.enabled"] == "true"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://minio.storage.svc:9000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"


def test_labels(application):
    wanted = {"app.kubernetes.io/part-of": "flight-delay-pipeline", "pipeline-step": "features"}
    assert application["metadata"]["labels"] == wanted
    for role in ("driver", "executor"):
        labels = application["spec"][role]["labels"]
        assert wanted.items() <= labels.items()
        # Added by the operator from the task instance: how it finds the driver again.
        assert (labels["dag_id"], labels["task_id"], labels["try_number"]) == (DAG_ID, TASK_ID, "1")
        for key, value in labels.items():
            assert LABEL_VALUE.match(value), f"{role} label {key}={value!r} is not a valid label value"


def test_xcom_arguments_are_resolved_when_the_task_renders(build_dag, runtime_ti, monkeypatch):
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    dag = build_dag(xcom_arguments=True)
    assert dag.get_task(TASK_ID).upstream_task_ids == {"plan"}
    pulled = []

    def xcom_pull(self, task_ids=None, key="return_value", **_: Any) -> Any:
        # The worker's supervisor, which answers XCom reads, does not exist here.
        pulled.append((task_ids, key))
        return RENDERED_ARGUMENTS

    monkeypatch.setattr(RuntimeTaskInstance, "xcom_pull", xcom_pull)
    _, application = submit(dag, runtime_ti)
    assert application["spec"]["arguments"] == RENDERED_ARGUMENTS
    assert pulled == [("plan", "return_value")]


# Running it: results from the lake, rejections fail at once ------------------------------------

def driver_pod(name: str, phase: str, exit_code: int, message: str | None = None) -> k8s.V1Pod:
    terminated = k8s.V1ContainerStateTerminated(exit_code=exit_code, message=message)
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, namespace="ml-pipelines", labels={"spark-role": "driver"}),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name=DRIVER)]),
        status=k8s.V1PodStatus(phase=phase, container_statuses=[k8s.V1ContainerStatus(
            name=DRIVER, image="ghcr.io/flight-delay/jobs:0.1.0", image_id="", ready=False, restart_count=0,
            state=k8s.V1ContainerState(terminated=terminated))]),
    )


@pytest.fixture
def run_step(dag, runtime_ti, monkeypatch):
    """Run the rendered operator's execute against the stand-ins; the driver ends as the test says.

    Only three things are not the operator's own: the API server (stand-ins), the driver's
    log stream (get_logs off: the operator then polls the driver container instead of
    following its log) and the worker's supervisor, which takes XComs (recorded here).
    """
    import jobs.features
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    pushed: list[tuple[str, Any]] = []
    monkeypatch.setattr(RuntimeTaskInstance, "xcom_push", lambda self, key, value: pushed.append((key, value)))
    calls: list[tuple[list[str], dt.datetime]] = []

    def lake_results(arguments: list[str], started_at: dt.datetime) -> list[dict[str, Any]]:
        calls.append((arguments, started_at))
        return [{"ds": arguments[1], "status": "written", "features_uri": "s3://flight-delay-lake/prod/features"}]

    monkeypatch.setattr(jobs.features, "lake_results", lake_results, raising=False)

    def run(phase: str, exit_code: int, message: str | None = None, state: str = "RUNNING", **objects: Any):
        operator, context = rendered(dag, runtime_ti)
        operator.get_logs = False
        core, api = FakeCoreV1Api(), FakeCustomObjectsApi(state=state, **objects)
        connect(operator, core, api)
        original = operator.create_job_name

        def create_job_name() -> str:  # the driver pod exists under the name the operator picks
            name = original()
            core.pods[f"{name}-driver"] = driver_pod(f"{name}-driver", phase, exit_code, message)
            return name

        operator.create_job_name = create_job_name
        outcome: dict[str, Any] = {"operator": operator, "core": core, "api": api, "pushed": pushed, "calls": calls}
        outcome["result"] = operator.execute(context)
        return outcome

    return run


def test_success_returns_the_lake_results_and_deletes_the_application(run_step):
    before = dt.datetime.now(dt.timezone.utc)
    outcome = run_step("Succeeded", 0)
    assert outcome["result"] == [
        {"ds": "2013-03-01", "status": "written", "features_uri": "s3://flight-delay-lake/prod/features"}]
    ((arguments, started_at),) = outcome["calls"]
    assert arguments == RENDERED_ARGUMENTS and before <= started_at <= dt.datetime.now(dt.timezone.utc)
    operator = outcome["operator"]
    assert operator.do_xcom_push, "Airflow pushes the returned results"
    assert outcome["api"].deleted == [operator.name]


def test_without_lake_results_a_step_has_no_results(run_step, monkeypatch):
    import jobs.features

    monkeypatch.delattr(jobs.features, "lake_results")
    assert run_step("Succeeded", 0)["result"] == []


def test_rejected_input_fails_at_once(run_step):
    from common.operators import StepRejected

    message = "features 2013-03-01 rejected: schema mismatch: dep_delay is not a declared feature"
    with pytest.raises(StepRejected) as caught:
        run_step("Failed", 3, message)
    assert isinstance(caught.value, AirflowFailException), "AirflowFailException: no retry"
    assert message in str(caught.value), "the driver's termination message names the failed checks"
    assert isinstance(caught.value.__cause__, AirflowException)


def test_rejection_seen_while_waiting_for_the_start_fails_at_once(run_step):
    """A step that fails within the provider's first status polls fails in start_spark_job, before cleanup."""
    from common.operators import StepRejected

    with pytest.raises(StepRejected) as caught:
        run_step("Failed", 3, "rejected", state="FAILED", error="driver container failed with ExitCode: 3")
    assert "Spark Job Failed" in str(caught.value.__cause__)


@pytest.mark.parametrize("exit_code", [1, 2, 137])
def test_other_failures_stay_retryable_and_keep_the_application(run_step, exit_code):
    from common.operators import StepRejected

    with pytest.raises(AirflowException) as caught:
        run_step("Failed", exit_code)
    assert not isinstance(caught.value, (AirflowFailException, StepRejected)), "these must retry with backoff"


def test_failed_application_is_kept_for_on_call(dag, runtime_ti):
    operator, _ = rendered(dag, runtime_ti)
    api = FakeCustomObjectsApi()
    connect(operator, FakeCoreV1Api(), api)
    operator.name = "build-features-abc12345"
    operator.process_pod_deletion(driver_pod("build-features-abc12345-driver", "Failed", 1))
    assert api.deleted == []
    operator.process_pod_deletion(driver_pod("build-features-abc12345-driver", "Succeeded", 0))
    assert api.deleted == ["build-features-abc12345"]


# Settings --------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, expected", [
    ({"driver": {"cores": 2, "core_limit": "1500m", "memory": "2g"}},
     "runner.spark_application.driver: Value error, core_limit '1500m' is below cores (2)"),
    ({"executor": {"instances": 2, "cores": 1, "memory": "4Gi"}}, "runner.spark_application.executor.memory:"),
    ({"executor": {"instances": 0, "cores": 1, "memory": "4g"}}, "runner.spark_application.executor.instances:"),
    ({"conf": {"fs.s3a.endpoint": "x"}}, "runner.spark_application.conf: Value error, not Spark properties"),
    ({"image": "spark"}, "runner: Value error, spark_application.image 'spark' is not a key of images (jobs, trainer)"),
    ({"spark_version": "latest"}, "runner.spark_application.spark_version:"),
])
def test_bad_spark_application_settings_fail_with_their_key(monkeypatch, change, expected):
    from jobs.settings import SettingsError, load_settings

    for name, value in change.items():
        monkeypatch.setenv(f"PIPELINE__RUNNER__SPARK_APPLICATION__{name.upper()}", json.dumps(value))
    with pytest.raises(SettingsError) as caught:
        load_settings("production")
    assert expected in str(caught.value)


# The other steps -------------------------------------------------------------------------------

@pytest.mark.parametrize("step", ["ingest", "publish", "training_set"])
def test_non_spark_steps_still_run_in_pods(settings, monkeypatch, step):
    monkeypatch.syspath_prepend(str(DAGS_DIR))
    from airflow.sdk import DAG

    from common.pod_operator import PodStepOperator
    from common.spark_operator import SPARK_STEPS
    from common.steps import pipeline_step

    assert step not in SPARK_STEPS
    with DAG("pod_step_under_test", schedule=None):
        task = pipeline_step("run", step=step, arguments=["--ds", "{{ ds }}"])
    assert isinstance(task, PodStepOperator) and not isinstance(task, SparkKubernetesOperator)
    assert task.cmds == ["python", "-m", f"jobs.{step}"] and task.image == settings.runner.images["jobs"]


# Least privilege -------------------------------------------------------------------------------

def test_driver_and_executors_run_least_privileged(application, settings):
    security = settings.runner.pod_security
    local_dir = settings.runner.spark_application.local_dir
    for role, container_name in (("driver", DRIVER), ("executor", "spark-kubernetes-executor")):
        template = application["spec"][role]["template"]
        # Read back into the client's model: what spark-submit will read as the pod template.
        model = ApiClient().deserialize(_JsonResponse(template), "V1PodTemplateSpec")
        assert ApiClient().sanitize_for_serialization(model) == template
        spec = template["spec"]
        assert spec["automountServiceAccountToken"] is (role == "driver"), "only the driver creates pods"
        assert spec["securityContext"] == {
            "runAsNonRoot": True, "runAsUser": security.run_as_user, "runAsGroup": security.run_as_group,
            "fsGroup": security.fs_group, "seccompProfile": {"type": "RuntimeDefault"}}
        (container,) = spec["containers"]
        assert container["name"] == container_name, "Spark finds its container in the template by this name"
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True, "runAsNonRoot": True}
        volumes = {volume["name"]: volume["emptyDir"] for volume in spec["volumes"]}
        mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        for volume in (*security.scratch, local_dir):
            assert volumes[volume.name] == {"sizeLimit": volume.size_limit}
            assert mounts[volume.name] == volume.mount_path
        assert local_dir.name.startswith("spark-local-dir-"), "Spark takes only these as its local dirs"
        env = env_of(application, role)
        assert env["HOME"]["value"] == "/home/pipeline" and env["TMPDIR"]["value"] == "/tmp"
        assert "SPARK_LOCAL_DIRS" not in env, "Spark sets it from the spark-local-dir-* mounts"


def test_the_application_sent_matches_the_operators_crd(application):
    """The body as the API server receives it (task labels included) against the Spark operator's CRD.

    The one field the CRD does not declare is `spec.labels`, which SparkKubernetesOperator
    adds for its own bookkeeping; the API server prunes it, and the same labels reach the
    driver and executors through spec.driver.labels and spec.executor.labels, which it keeps.
    """
    from tests.outside_checks import SPARK_APPLICATION_SCHEMA, crd_errors, external_schema

    errors = crd_errors(application, external_schema(SPARK_APPLICATION_SCHEMA))
    assert errors == [".spec.labels: not in the CRD"]
    task_labels = {"dag_id", "task_id", "run_id", "try_number"}
    assert task_labels <= application["spec"]["driver"]["labels"].keys()
    assert task_labels <= application["spec"]["executor"]["labels"].keys()
