"""Layer 3, checked by outside tools: every pod the production operators start is admissible and least privileged.

Every DAG file is loaded with PIPELINE_ENV=production, once for the module, and every
heavy step is rendered by its real operator: PodStepOperator's `build_pod_request_obj`
(KubernetesPodOperator's own pod, XCom sidecar included) and SparkStepOperator's Jinja
template and `manage_template_specs` (the SparkApplication body). A Spark driver or executor
pod is what spark-submit makes of the application's pod template: the template's pod with
Spark's container (image, environment, service account, the pod resources Spark asks for).
Task-instance labels and rendered Jinja arguments are left as the operators have them before
a run; tests/dags/test_pod_step_operator.py and test_spark_application.py render those.

Then:
- kubernetes-validate: every pod strictly against the Kubernetes 1.33 schemas (unknown or
  misplaced fields fail, as `kubectl --validate=strict` would);
- the Spark operator's CRD: every SparkApplication against the openAPIV3Schema of
  SparkApplication v1beta2 (Spark operator 2.5.2), when that schema is at hand
  (tests/outside_checks.py, `external_schema`);
- the "restricted" Pod Security Standard, written from its published controls
  (kubernetes.io/docs/concepts/security/pod-security-standards), and what this repository asks
  beyond it (read-only root filesystem, no token but the driver's, the images' user);
- checkov's Kubernetes policies over the rendered pods together with deploy/kubernetes/ (its
  NetworkPolicies select the pods), skips justified in .checkov.yaml only;
- detect-secrets over the rendered specs: nothing that looks like a credential.

Each outside check is first shown a pod that breaks it (a canary), so a check that sees
nothing cannot pass for one that finds nothing.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.outside_checks import (CANARY_POD, CANARY_SECRET, KUBERNETES_VERSION, SPARK_APPLICATION_SCHEMA, checkov_failures,
                                  crd_errors, external_schema, kubernetes_errors, restricted_violations, secrets_found)

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags"
# Values that exist only in the environment of the process that renders: never in a spec.
SENTINELS = {
    "AWS_ACCESS_KEY_ID": "AKIA-SENTINEL-NOT-FOR-PODS",
    "AWS_SECRET_ACCESS_KEY": "sentinel-secret-access-key-not-for-pods",  # pragma: allowlist secret
    "MLFLOW_TRACKING_TOKEN": "sentinel-mlflow-token-not-for-pods",
}
# The user every image ends as (hadolint's rules make it numeric).
DOCKER_USER = re.compile(r"^USER\s+(\d+)(?::(\d+))?\s*$", re.MULTILINE)


@dataclass
class Rendered:
    """What the production operators render, keyed "dag_id.task_id" (a Spark pod: "...:driver")."""

    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    spark_pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: dict[str, str] = field(default_factory=dict)

    @property
    def all_pods(self) -> dict[str, dict[str, Any]]:
        return {**self.pods, **self.spark_pods}


def _placeholder_arguments(operator: Any) -> None:
    """Arguments made by an upstream task (an XComArg) become plain strings: they are data, not spec."""
    from airflow.sdk import XComArg

    if isinstance(operator.arguments, XComArg):
        operator.arguments = ["--ds", "2013-03-01"]


def _render_pod(task: Any) -> dict[str, Any]:
    from kubernetes.client import ApiClient

    operator = copy.copy(task)
    _placeholder_arguments(operator)
    return ApiClient().sanitize_for_serialization(operator.build_pod_request_obj(None, dry_run=True))


def _render_application(dag: Any, task: Any) -> dict[str, Any]:
    operator = copy.copy(task)
    _placeholder_arguments(operator)
    operator.application_file = operator.render_template(
        operator.application_file, {"task": operator}, jinja_env=dag.get_template_env())
    body = operator.manage_template_specs()["spark"]
    body["metadata"]["name"] = operator.create_job_name()
    return json.loads(json.dumps(body))


def _spark_memory_mib(size: str) -> int:
    value, unit = int(size[:-1]), size[-1]
    return value * {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}[unit]


def spark_pod(application: dict[str, Any], role: str) -> dict[str, Any]:
    """The driver or an executor pod as spark-submit builds it from the application's pod template.

    Spark keeps the template's pod (security contexts, volumes, token) and its container
    (security context, mounts) and adds its own: image, environment, service account, and
    requests of `cores` CPUs and the heap plus the non-JVM overhead (40%, at least 384 MiB).
    """
    spec, part = application["spec"], application["spec"][role]
    template = copy.deepcopy(part["template"])
    pod_spec = template["spec"]
    (container,) = pod_spec["containers"]
    heap = _spark_memory_mib(part["memory"])
    memory = f"{int(heap + max(384, 0.4 * heap))}Mi"
    container.update({
        "image": spec["image"], "imagePullPolicy": spec["imagePullPolicy"], "env": part["env"],
        "resources": {"requests": {"cpu": str(part["cores"]), "memory": memory},
                      "limits": {"cpu": part.get("coreLimit", str(part["cores"])), "memory": memory}},
    })
    pod_spec.update({"serviceAccountName": part["serviceAccount"], "restartPolicy": "Never"})
    name = application["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-{role}" if role == "driver" else f"{name}-exec-1",
                         "namespace": application["metadata"]["namespace"], "labels": part["labels"]},
            "spec": pod_spec}


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import DAG

    result = Rendered()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIPELINE_ENV", "production")
        for name, value in SENTINELS.items():
            patch.setenv(name, value)
        patch.syspath_prepend(str(DAGS_DIR))
        from common.pod_operator import PodStepOperator
        from common.spark_operator import SparkStepOperator

        for path in sorted(DAGS_DIR.glob("*.py")):
            spec = importlib.util.spec_from_file_location(f"_least_privilege_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            for dag in [value for value in vars(module).values() if isinstance(value, DAG)]:
                for task in dag.tasks:
                    key = f"{dag.dag_id}.{task.task_id}"
                    if isinstance(task, SparkStepOperator):
                        result.applications[key] = application = _render_application(dag, task)
                        for role in ("driver", "executor"):
                            result.spark_pods[f"{key}:{role}"] = spark_pod(application, role)
                    elif isinstance(task, PodStepOperator):
                        result.pods[key] = _render_pod(task)
                    else:
                        assert not isinstance(task, KubernetesPodOperator), f"{key}: a pod outside the step factory"
                        continue
                    result.steps[key] = task.step
    return result


def test_every_heavy_step_of_every_dag_is_rendered(rendered):
    from common.spark_operator import SPARK_STEPS

    assert set(rendered.steps.values()) >= {"ingest", "publish", "train", "evaluate", "registry", "monitor",
                                            "backtest", *SPARK_STEPS}
    assert {rendered.steps[key] for key in rendered.applications} == set(SPARK_STEPS)
    assert len(rendered.spark_pods) == 2 * len(rendered.applications)
    assert "delay_model_training.train" in rendered.pods


# kubernetes-validate ---------------------------------------------------------------------------

def test_kubernetes_validate_refuses_a_misplaced_field():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "canary"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.37.0", "securityContext": {"runAsNonRoot": True}}],
                    "runAsNonRoot": True}}  # a container field at pod level: strict validation refuses it
    assert kubernetes_errors(pod)


def test_every_pod_is_valid_kubernetes_1_33_strictly(rendered):
    from kubernetes_validate.utils import all_versions

    assert KUBERNETES_VERSION in all_versions(), f"kubernetes-validate ships {sorted(set(all_versions()))}"
    errors = {name: kubernetes_errors(pod) for name, pod in rendered.all_pods.items()}
    assert not {name: found for name, found in errors.items() if found}


# The Spark operator's CRD ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def spark_application_schema() -> dict[str, Any]:
    return external_schema(SPARK_APPLICATION_SCHEMA)


def test_crd_schema_refuses_a_wrong_application(spark_application_schema, rendered):
    application = copy.deepcopy(next(iter(rendered.applications.values())))
    application["spec"]["type"] = "Ruby"  # not an enum value
    application["spec"]["driver"]["cores"] = "one"  # not an integer
    application["spec"]["executor"]["instanceCount"] = 2  # not a field
    errors = crd_errors(application, spark_application_schema)
    assert any(e.startswith("spec.type:") for e in errors) and any(e.startswith("spec.driver.cores:") for e in errors)
    assert ".spec.executor.instanceCount: not in the CRD" in errors


def test_every_spark_application_matches_the_operators_crd(spark_application_schema, rendered):
    errors = {name: crd_errors(app, spark_application_schema) for name, app in rendered.applications.items()}
    assert not {name: found for name, found in errors.items() if found}


# The restricted Pod Security Standard ----------------------------------------------------------

def test_the_standard_check_refuses_a_privileged_pod():
    violations = restricted_violations(CANARY_POD)
    for control in ("host namespaces: hostNetwork", "volume host", "pod runAsUser 0", "privileged", "hostPort",
                    "capabilities not dropped", "capabilities added", "allowPrivilegeEscalation", "runAsNonRoot",
                    "seccomp"):
        assert any(control in violation for violation in violations), control


def test_every_pod_is_admissible_under_the_restricted_standard(rendered):
    violations = {name: restricted_violations(pod) for name, pod in rendered.all_pods.items()}
    assert not {name: found for name, found in violations.items() if found}


def image_users() -> set[int]:
    users = set()
    for dockerfile in (REPO_ROOT / "docker").glob("*.Dockerfile"):
        *_, last = DOCKER_USER.finditer(dockerfile.read_text())
        users.add(int(last.group(1)))
    return users


def test_every_pod_runs_as_the_images_user_with_a_read_only_root(rendered):
    from jobs.settings import load_settings

    security = load_settings("production").runner.pod_security
    assert image_users() == {security.run_as_user}, "settings and the images' USER disagree"
    for name, pod in rendered.all_pods.items():
        context = pod["spec"]["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (
            security.run_as_user, security.run_as_group, security.fs_group), name
        for container in pod["spec"]["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, f"{name} {container['name']}"
        (step,) = [c for c in pod["spec"]["containers"] if c["name"] != "airflow-xcom-sidecar"]
        mounts = {mount["mountPath"] for mount in step["volumeMounts"]}
        env = {item["name"]: item.get("value") for item in step["env"]}
        for volume in security.scratch:
            assert volume.mount_path in mounts and env[volume.env] == volume.mount_path, name


def test_only_the_spark_driver_holds_a_token_and_its_own_account(rendered):
    from jobs.settings import load_settings

    runner = load_settings("production").runner
    for name, pod in rendered.all_pods.items():
        driver = name.endswith(":driver")
        assert pod["spec"]["automountServiceAccountToken"] is driver, name
        wanted = runner.spark_application.driver_service_account if driver else runner.service_account
        assert pod["spec"]["serviceAccountName"] == wanted, name
    assert runner.spark_application.driver_service_account != runner.service_account


# checkov ---------------------------------------------------------------------------------------

def test_checkov_passes_every_pod_with_the_deployment(rendered, tmp_path):
    pods, canary = tmp_path / "pods", tmp_path / "canary"
    pods.mkdir()
    canary.mkdir()
    for name, pod in rendered.all_pods.items():
        (pods / (re.sub(r"[^A-Za-z0-9_.-]", "-", name) + ".yaml")).write_text(yaml.safe_dump(pod))
    # The namespaces and NetworkPolicies the pods run under belong to the same scan.
    for manifest in (REPO_ROOT / "deploy" / "kubernetes").glob("*.yaml"):
        if manifest.name != "airflow-values.yaml":
            (pods / f"deploy-{manifest.name}").write_text(manifest.read_text())
    (canary / "canary.yaml").write_text(yaml.safe_dump(CANARY_POD))
    failures = checkov_failures(tmp_path)
    canary_checks = {entry.split()[0] for entry in failures.pop("canary/canary.yaml", [])}
    assert {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_23", "CKV_K8S_37"} <= canary_checks, canary_checks
    assert failures == {}


# detect-secrets --------------------------------------------------------------------------------

def test_no_secret_in_the_rendered_specs(rendered, tmp_path):
    specs = {**rendered.all_pods, **rendered.applications}
    paths = []
    for name, spec in specs.items():
        path = tmp_path / (re.sub(r"[^A-Za-z0-9_.-]", "-", name) + ".yaml")
        path.write_text(yaml.safe_dump(spec))
        paths.append(path)
    text = "\n".join(path.read_text() for path in paths)
    assert not [name for name, value in SENTINELS.items() if value in text], "the renderer's secrets leaked"
    canary = tmp_path / "canary.yaml"
    canary.write_text(yaml.safe_dump({"env": [{"name": "AWS_SECRET_ACCESS_KEY",
                                               "value": CANARY_SECRET}]}))
    assert secrets_found([canary]), "detect-secrets must see a literal secret"
    assert secrets_found(paths) == []
