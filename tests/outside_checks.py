"""The outside checks the tests share: kubernetes-validate, the restricted Pod Security Standard, checkov, detect-secrets.

Used by tests/dags/test_least_privilege.py (the pods the operators render) and
tests/unit/test_deploy.py (deploy/, docker/, the repository). Each check comes with a way to
show it something that breaks it (CANARY_POD), so a check that sees nothing cannot pass for
one that finds nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
KUBERNETES_VERSION = "1.33.0"
CHECKOV = REPO_ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"
# A literal credential (AWS's documentation example) that detect-secrets must find where a test writes it.
CANARY_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYs3cr"  # pragma: allowlist secret
# Schemas published by other projects, which this repository does not copy (docs/deploy.md,
# "Checks"): read from PIPELINE_EXTERNAL_SCHEMAS, or from shared/schemas/ beside the checkout.
EXTERNAL_SCHEMAS = Path(os.environ.get("PIPELINE_EXTERNAL_SCHEMAS") or REPO_ROOT.parent / "shared" / "schemas")
# SparkApplication v1beta2's openAPIV3Schema (kubeflow/spark-operator,
# config/crd/bases/sparkoperator.k8s.io_sparkapplications.yaml), as JSON.
SPARK_APPLICATION_SCHEMA = "sparkapplication-v1beta2.schema.json"
# The official Airflow chart's values.schema.json.
AIRFLOW_CHART_SCHEMA = "airflow-chart-values.schema.json"


def external_schema(name: str) -> dict[str, Any]:
    """A schema of EXTERNAL_SCHEMAS; the test is skipped, saying so, when it is not there.

    These are other projects' published text, not copied into this repository: docs/deploy.md
    ("Checks") says how to extract each from its project's release.
    """
    import pytest

    path = EXTERNAL_SCHEMAS / name
    if not path.is_file():
        pytest.skip(f"no {name} in {EXTERNAL_SCHEMAS} (docs/deploy.md, Checks)")
    return json.loads(path.read_text())


def kubernetes_errors(manifest: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(map(str, error.path))}: {error.message}"]
    return []


ALLOWED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                        "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The controls of the "restricted" profile (baseline's included) that a pod breaks, as the admission plugin reads them."""
    spec = pod["spec"]
    pod_context = spec.get("securityContext") or {}
    containers = [*spec.get("initContainers", []), *spec["containers"], *spec.get("ephemeralContainers", [])]
    found = []
    for name in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(name):
            found.append(f"host namespaces: {name}")
    if pod_context.get("windowsOptions", {}).get("hostProcess"):
        found.append("HostProcess")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            found.append(f"volume {volume['name']}: {sorted(kinds - ALLOWED_VOLUME_TYPES)}")
    for sysctl in pod_context.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl['name']}")
    if pod_context.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    for profile in [pod_context.get("appArmorProfile")]:
        if profile and profile.get("type") not in ("RuntimeDefault", "Localhost"):
            found.append(f"pod AppArmor {profile}")
    if pod_context.get("seLinuxOptions", {}).get("type") not in (None, "", "container_t", "container_init_t",
                                                                 "container_kvm_t", "container_engine_t"):
        found.append("pod SELinux type")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    for container in containers:
        where = f"container {container['name']}"
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            found.append(f"{where}: privileged")
        if context.get("windowsOptions", {}).get("hostProcess"):
            found.append(f"{where}: HostProcess")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{where}: hostPort")
        if context.get("procMount", "Default") != "Default":
            found.append(f"{where}: procMount")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{where}: capabilities not dropped (ALL)")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{where}: capabilities added {capabilities['add']}")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation is not false")
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
            found.append(f"{where}: runAsNonRoot is not true")
        if context.get("runAsUser") == 0:
            found.append(f"{where}: runAsUser 0")
        if (context.get("seccompProfile") or {}).get("type", pod_seccomp) not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccomp is not RuntimeDefault or Localhost")
        profile = context.get("appArmorProfile")
        if profile and profile.get("type") not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: AppArmor {profile}")
    return found


# A pod that breaks every control on purpose, shown to each check first.
CANARY_POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "canary-bad-on-purpose", "namespace": "ml-pipelines"},
    "spec": {
        "hostNetwork": True,
        "securityContext": {"runAsUser": 0},
        "containers": [{"name": "step", "image": "busybox:latest",
                        "securityContext": {"privileged": True, "allowPrivilegeEscalation": True,
                                            "capabilities": {"add": ["SYS_ADMIN"]}},
                        "ports": [{"containerPort": 80, "hostPort": 80}]}],
        "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
    },
}


def checkov_failures(directory: Path, framework: str = "kubernetes") -> dict[str, list[str]]:
    """checkov's policies of a framework over a folder: {file: ["CKV_... resource", ...]} of the failed checks.

    With the repository's .checkov.yaml: the skipped checks, each with its reason, are there only.
    """
    assert CHECKOV.is_file(), f"{CHECKOV} is missing: run `make checkov`"
    done = subprocess.run(
        [str(CHECKOV), "--config-file", str(REPO_ROOT / ".checkov.yaml"), "--directory", str(directory),
         "--framework", framework, "--output", "json"],
        capture_output=True, text=True, timeout=300, cwd=directory)
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-3000:]
    reports = json.loads(done.stdout)
    failures: dict[str, list[str]] = {}
    for report in reports if isinstance(reports, list) else [reports]:
        assert report.get("check_type") in (None, framework), report.get("check_type")
        for check in report.get("results", {}).get("failed_checks", []):
            failures.setdefault(check["file_path"].lstrip("/"), []).append(f"{check['check_id']} {check['resource']}")
    return failures


def secrets_found(paths: list[Path]) -> list[str]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    with default_settings():
        collection = SecretsCollection()
        for path in paths:
            collection.scan_file(str(path))
    return [f"{Path(name).name}:{secret.line_number} {secret.type}" for name, secret in collection]


def unknown_fields(node: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not declare: the API server prunes them without a word."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(node, dict):
        properties, extra = schema.get("properties"), schema.get("additionalProperties")
        for key, value in node.items():
            if properties is not None and key in properties:
                found += unknown_fields(value, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(value, extra, f"{path}.{key}")
            elif properties is not None and extra is None:
                found.append(f"{path}.{key}")
    elif isinstance(node, list) and isinstance(schema.get("items"), dict):
        for index, value in enumerate(node):
            found += unknown_fields(value, schema["items"], f"{path}[{index}]")
    return found


def crd_errors(application: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(application)]
    return errors + [f"{name}: not in the CRD" for name in unknown_fields(application, schema)]
