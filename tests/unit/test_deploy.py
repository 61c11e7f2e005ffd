"""deploy/kubernetes/, docker/ and the repository, checked by outside tools without a cluster.

- every manifest strictly against the Kubernetes 1.33 schemas (kubernetes-validate) and
  checkov's Kubernetes policies; the Dockerfiles against checkov's Dockerfile policies;
- the Helm values against the official Airflow chart's values schema (check-jsonschema), when
  that schema is at hand (tests/outside_checks.py: EXTERNAL_SCHEMAS);
- what the manifests grant, name and reference, against config/settings.yaml and each other:
  the namespaces' Pod Security levels, who may do what, Secret templates without values and
  a template for every Secret anything reads;
- the repository against the reviewed detect-secrets baseline (.secrets.baseline): any new
  finding fails.
(The pods the production operators render are checked in tests/dags/test_least_privilege.py.)
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from jobs.settings import REPO_ROOT, load_settings
from tests.outside_checks import (AIRFLOW_CHART_SCHEMA, CANARY_POD, CANARY_SECRET, EXTERNAL_SCHEMAS, checkov_failures,
                                  external_schema, kubernetes_errors, restricted_violations, secrets_found,
                                  unknown_fields)

DEPLOY = REPO_ROOT / "deploy" / "kubernetes"
HELM_VALUES = DEPLOY / "airflow-values.yaml"
SECRET_TEMPLATES = DEPLOY / "secrets.template.yaml"
MANIFESTS = sorted(path for path in DEPLOY.glob("*.yaml") if path != HELM_VALUES)
DEPLOY_GUIDE = REPO_ROOT / "docs" / "deploy.md"
BASELINE = REPO_ROOT / ".secrets.baseline"
PLATFORM_NAMESPACE = "ml-platform"
PSS_LEVEL = "pod-security.kubernetes.io/enforce"


@pytest.fixture(scope="module")
def settings():
    return load_settings("production")


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def helm_values() -> dict[str, Any]:
    return yaml.safe_load(HELM_VALUES.read_text())


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """{(namespace, name): object} of one kind."""
    return {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects if o["kind"] == kind}


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice (PyYAML keeps the last one, silently; kubectl and Helm would too)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicates = sorted({key for key in keys if keys.count(key) > 1}, key=str)
        if duplicates:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {duplicates}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


@pytest.mark.parametrize("path", [*MANIFESTS, HELM_VALUES], ids=lambda path: path.name)
def test_no_key_is_given_twice(path):
    list(yaml.load_all(path.read_text(), Loader=_StrictLoader))


def test_a_key_given_twice_is_refused():
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate keys"):
        yaml.load("dagProcessor: {}\nexecutor: x\ndagProcessor: {}\n", Loader=_StrictLoader)


def test_there_is_a_manifest_of_each_part():
    assert {path.name for path in MANIFESTS} >= {"namespaces.yaml", "serviceaccounts.yaml", "rbac.yaml",
                                                 "secrets.template.yaml", "mlflow.yaml", "networkpolicies.yaml"}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_manifest_is_valid_kubernetes_1_33_strictly(manifest):
    docs = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]
    assert docs
    errors = {f"{doc['kind']}/{doc['metadata']['name']}": kubernetes_errors(doc) for doc in docs}
    assert not {name: found for name, found in errors.items() if found}


def test_kubernetes_validate_refuses_a_wrong_role():
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "canary"},
            "rules": {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}}  # a map where a list belongs
    assert kubernetes_errors(role)


def test_namespaces_and_their_pod_security_levels(objects, settings):
    namespaces = {name: ns["metadata"]["labels"] for (_, name), ns in of_kind(objects, "Namespace").items()}
    assert set(namespaces) == {settings.runner.namespace, PLATFORM_NAMESPACE}
    # Every pod the pipeline starts runs where the restricted standard is enforced.
    assert namespaces[settings.runner.namespace][PSS_LEVEL] == "restricted"
    assert namespaces[PLATFORM_NAMESPACE][PSS_LEVEL] in ("baseline", "restricted")
    for labels in namespaces.values():
        assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"
    namespaced = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert namespaced <= set(namespaces), "every object lives in one of the two namespaces"


def test_service_accounts_and_their_tokens(objects, settings, helm_values):
    accounts = of_kind(objects, "ServiceAccount")
    runner = settings.runner
    for name in (runner.service_account, runner.spark_application.driver_service_account):
        assert accounts[(runner.namespace, name)]["automountServiceAccountToken"] is False, name
    # The pods that need a token ask for it themselves (the Spark driver's pod template).
    assert all(account["automountServiceAccountToken"] is False for account in accounts.values())
    worker = helm_values["workers"]["celery"]["serviceAccount"]
    assert worker["create"] is True and worker["name"] == "airflow-worker"
    # Only the workers start pods; no other Airflow component gets a token.
    assert worker["automountServiceAccountToken"] is True
    for component in ("scheduler", "apiServer", "dagProcessor", "triggerer"):
        assert helm_values[component]["serviceAccount"]["automountServiceAccountToken"] is False, component


def rules_of(objects: list[dict[str, Any]], namespace: str, subject: str, subject_namespace: str) -> list[dict]:
    """The rules that bindings in a namespace grant a service account."""
    roles = of_kind(objects, "Role")
    granted = []
    for (ns, _), binding in of_kind(objects, "RoleBinding").items():
        if ns == namespace and {"kind": "ServiceAccount", "name": subject, "namespace": subject_namespace} in \
                binding["subjects"]:
            granted += roles[(ns, binding["roleRef"]["name"])]["rules"]
    return granted


def allowed(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


def test_rbac_grants_each_account_what_it_does_and_no_more(objects, settings, helm_values):
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")], "nothing cluster-wide"
    for role in of_kind(objects, "Role").values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], role["metadata"]["name"]
            assert "secrets" not in rule["resources"], "Secrets reach pods through the kubelet, never the API"
    runner = settings.runner
    ns = runner.namespace
    # The steps' pods and the executors: nothing at all.
    assert rules_of(objects, ns, runner.service_account, ns) == []
    assert not [b for b in of_kind(objects, "RoleBinding").values()
                if any(s["name"] == runner.service_account for s in b["subjects"])]
    # The Spark driver: its executors, their configmap, its service.
    driver = rules_of(objects, ns, runner.spark_application.driver_service_account, ns)
    for resource, verbs in {"pods": ("create", "get", "list", "watch", "delete"),
                            "configmaps": ("create", "delete"), "services": ("create", "delete")}.items():
        assert all(allowed(driver, "", resource, verb) for verb in verbs), resource
    assert not allowed(driver, "sparkoperator.k8s.io", "sparkapplications", "create")
    # The Airflow workers: KubernetesPodOperator's and SparkKubernetesOperator's calls.
    worker = rules_of(objects, ns, helm_values["workers"]["celery"]["serviceAccount"]["name"], PLATFORM_NAMESPACE)
    for group, resource, verb in [("", "pods", "create"), ("", "pods", "get"), ("", "pods", "list"),
                                  ("", "pods", "watch"), ("", "pods", "patch"), ("", "pods", "delete"),
                                  ("", "pods/log", "get"), ("", "pods/exec", "create"), ("", "events", "list"),
                                  ("sparkoperator.k8s.io", "sparkapplications", "create"),
                                  ("sparkoperator.k8s.io", "sparkapplications", "get"),
                                  ("sparkoperator.k8s.io", "sparkapplications", "delete"),
                                  ("sparkoperator.k8s.io", "sparkapplications/status", "get")]:
        assert allowed(worker, group, resource, verb), (group, resource, verb)
    assert not allowed(worker, "", "services", "create") and not allowed(worker, "", "configmaps", "create")
    # The scheduler and the rest of Airflow start nothing in the steps' namespace.
    assert rules_of(objects, ns, "airflow-scheduler", PLATFORM_NAMESPACE) == []
    assert helm_values["rbac"]["create"] is False and helm_values["allowPodLaunching"] is False


def test_secret_templates_hold_no_value(objects):
    templates = of_kind(objects, "Secret")
    assert templates and all(key[0] for key in templates), "every Secret is namespaced"
    for (ns, name), secret in templates.items():
        assert "data" not in secret, f"{ns}/{name}: a template names keys, it holds no data"
        assert secret["stringData"] and set(secret["stringData"].values()) == {""}, f"{ns}/{name} has a value"
    kinds = {o["kind"] for path in MANIFESTS if path != SECRET_TEMPLATES
             for o in yaml.safe_load_all(path.read_text()) if o}
    assert "Secret" not in kinds, "Secrets are only templates (secrets.template.yaml), created by kubectl"


def secret_keys(objects: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(ns, name, key) for (ns, name), secret in of_kind(objects, "Secret").items()
            for key in secret["stringData"]}


def secret_key_refs(node: Any) -> list[tuple[str, str]]:
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            return [(node["secretKeyRef"]["name"], node["secretKeyRef"]["key"])]
        return [ref for value in node.values() for ref in secret_key_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in secret_key_refs(value)]
    return []


def test_every_secret_read_has_a_template(objects, settings, helm_values):
    templates = secret_keys(objects)
    wanted = {(settings.runner.namespace, ref.secret, ref.key) for ref in settings.runner.secret_env}
    # The Airflow workers read the lake and MLflow with the same Secrets, in their namespace.
    wanted |= {(PLATFORM_NAMESPACE, ref.secret, ref.key) for ref in settings.runner.secret_env}
    for (ns, _), deployment in of_kind(objects, "Deployment").items():
        wanted |= {(ns, name, key) for name, key in secret_key_refs(deployment)}
    wanted |= {(PLATFORM_NAMESPACE, s["secretName"], s["secretKey"]) for s in helm_values["secret"]}
    wanted |= {(PLATFORM_NAMESPACE, helm_values["data"]["metadataSecretName"], "connection"),
               (PLATFORM_NAMESPACE, helm_values["fernetKeySecretName"], "fernet-key"),
               (PLATFORM_NAMESPACE, helm_values["apiSecretKeySecretName"], "api-secret-key"),
               (PLATFORM_NAMESPACE, helm_values["jwtSecretName"], "jwt-secret")}
    assert wanted - templates == set(), "read but never described"
    assert templates - wanted == set(), "described but read by nothing"


def test_the_guide_creates_every_secret_and_applies_every_manifest():
    guide = DEPLOY_GUIDE.read_text()
    for (ns, name), secret in of_kind([d for d in yaml.safe_load_all(SECRET_TEMPLATES.read_text()) if d],
                                      "Secret").items():
        assert re.search(rf"kubectl create secret generic {re.escape(name)} -n (\"\$ns\"|{ns})", guide), name
    assert "--from-literal" not in guide, "a value on the command line lands in the shell history"
    for path in MANIFESTS:
        applied = f"kubectl apply -f deploy/kubernetes/{path.name}" in guide
        assert applied is (path != SECRET_TEMPLATES), path.name
    order = [guide.index(f"kubectl apply -f deploy/kubernetes/{name}")
             for name in ("namespaces.yaml", "serviceaccounts.yaml", "rbac.yaml", "mlflow.yaml")]
    assert order == sorted(order), "namespaces first, then what lives in them"
    assert "helm upgrade --install airflow apache-airflow/airflow" in guide
    assert "--values deploy/kubernetes/airflow-values.yaml" in guide


def test_helm_values_run_the_production_pipeline(helm_values, settings):
    assert {"name": "PIPELINE_ENV", "value": "production"} in helm_values["env"]
    assert helm_values["executor"] == "CeleryExecutor"
    image = helm_values["images"]["airflow"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", image["tag"]) and image["tag"] == helm_values["defaultAirflowTag"]
    assert image["repository"] == helm_values["defaultAirflowRepository"]
    # The image's Airflow version is the chart's airflowVersion.
    dockerfile = (REPO_ROOT / "docker" / "airflow.Dockerfile").read_text()
    assert f"apache-airflow=={helm_values['airflowVersion']}" in dockerfile
    # The DAG bundle is the image's DAG folder, where airflow.Dockerfile puts dags/.
    dags_folder = re.search(r"AIRFLOW__CORE__DAGS_FOLDER=(\S+)", dockerfile).group(1)
    (bundle,) = helm_values["dagProcessor"]["dagBundleConfigList"]
    assert bundle["kwargs"]["path"] == dags_folder == helm_values["config"]["core"]["dags_folder"]
    assert helm_values["dags"]["gitSync"]["enabled"] is False
    # No credential in the values: only references.
    text = HELM_VALUES.read_text()
    for key in ("fernetKey:", "apiSecretKey:", "jwtSecret:", "metadataConnection:", "password:"):
        assert not re.search(rf"^\s*{key}", text, flags=re.MULTILINE), key
    assert helm_values["postgresql"]["enabled"] is False


def test_helm_values_match_the_charts_schema(tmp_path, helm_values):
    """check-jsonschema with the chart's values.schema.json (chart 1.22.0), and no key the schema lacks.

    The schema leaves some objects open (the top level, `securityContexts`): a misspelt key there
    passes it and the chart ignores it, so every key must also be one the schema declares.
    """
    declared = external_schema(AIRFLOW_CHART_SCHEMA)
    schema = EXTERNAL_SCHEMAS / AIRFLOW_CHART_SCHEMA
    assert unknown_fields(helm_values, declared) == []
    assert unknown_fields({"securityContexts": {"container": {}}}, declared) == [".securityContexts.container"]
    check = Path(sys.executable).with_name("check-jsonschema")
    canary = tmp_path / "canary-values.yaml"
    canary.write_text("executor: 42\nworkers:\n  replicas: many\n")
    for values, ok in ((HELM_VALUES, True), (canary, False)):
        done = subprocess.run([str(check), "--schemafile", str(schema), str(values)],
                              capture_output=True, text=True, timeout=120)
        assert (done.returncode == 0) is ok, done.stdout + done.stderr


def test_mlflow_serves_the_production_tracking_uri(objects, settings):
    uri = urlparse(settings.mlflow.tracking_uri)
    name, namespace = uri.hostname.split(".")[:2]
    service = of_kind(objects, "Service")[(namespace, name)]
    (port,) = service["spec"]["ports"]
    assert port["port"] == uri.port
    deployment = of_kind(objects, "Deployment")[(namespace, name)]
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert container["image"] == settings.runner.images["jobs"]
    assert {"readinessProbe", "livenessProbe"} <= set(container), "the one server here is probed"
    assert restricted_violations({"spec": pod["spec"]}) == []
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert ("mlflow-db", "uri") in secret_key_refs(container)


# checkov -----------------------------------------------------------------------------------------

def test_checkov_kubernetes_policies_pass_on_the_manifests(tmp_path):
    for path in MANIFESTS:
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "canary").mkdir()
    (tmp_path / "canary" / "canary.yaml").write_text(yaml.safe_dump(CANARY_POD))
    failures = checkov_failures(tmp_path)
    assert {"CKV_K8S_16", "CKV_K8S_20"} <= {f.split()[0] for f in failures.pop("canary/canary.yaml", [])}
    assert failures == {}


def test_checkov_dockerfile_policies_pass_on_the_images(tmp_path):
    for path in (REPO_ROOT / "docker").glob("*.Dockerfile"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "canary").mkdir()
    (tmp_path / "canary" / "Dockerfile").write_text("FROM python:latest\nUSER root\nRUN apt-get update\n")
    failures = checkov_failures(tmp_path, framework="dockerfile")
    canary = {f.split()[0] for f in failures.pop("canary/Dockerfile", [])}
    assert {"CKV_DOCKER_7", "CKV_DOCKER_8"} <= canary, canary  # a tag other than latest; not root
    assert failures == {}


def test_every_checkov_skip_is_justified():
    config = (REPO_ROOT / ".checkov.yaml").read_text()
    skipped = yaml.safe_load(config)["skip-check"]
    assert skipped, "nothing skipped: drop this test"
    lines = config.splitlines()
    for check in skipped:
        (index,) = [i for i, line in enumerate(lines) if line.strip() == f"- {check}"]
        above = lines[index - 1].strip()
        # Its own reason, or the reason of the check listed with it.
        assert above.startswith("#") or above.startswith("- CKV"), check
        reasons = [line for line in lines[:index] if line.strip().startswith(f"# {check}") or
                   (line.strip().startswith("#") and check in line)]
        assert reasons, f"{check} is skipped without a reason naming it"


# detect-secrets ----------------------------------------------------------------------------------

def test_no_new_secret_in_the_repository(tmp_path, monkeypatch):
    """Everything git tracks, scanned as the baseline was: a finding that the baseline lacks fails.

    The baseline's findings were each reviewed (`detect-secrets audit`): secret names, not
    values (settings' secret_env, the Helm values' Secret references), and the tests'
    sentinels. Update it with `detect-secrets scan --baseline .secrets.baseline` and audit.
    """
    from detect_secrets.core import baseline
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import transient_settings

    recorded = json.loads(BASELINE.read_text())
    assert all(secret.get("is_secret") is False for found in recorded["results"].values() for secret in found), \
        "every finding in the baseline is reviewed and false"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    monkeypatch.chdir(REPO_ROOT)  # findings are keyed by the path as given: relative, as in the baseline
    with transient_settings({"plugins_used": recorded["plugins_used"], "filters_used": recorded["filters_used"]}):
        found = SecretsCollection()
        # The baseline itself is not scanned (its hashes look like keys), as detect-secrets does.
        found.scan_files(*[name for name in files if name and name != BASELINE.name and (REPO_ROOT / name).is_file()],
                         num_processors=1)
    new = found - baseline.load(recorded, filename=str(BASELINE))
    assert not [f"{name}:{secret.line_number} {secret.type}" for name, secret in new]
    canary = tmp_path / "settings.env"
    canary.write_text(f"AWS_SECRET_ACCESS_KEY={CANARY_SECRET}\n")
    assert secrets_found([canary]), "detect-secrets must see a literal secret"
