"""docker-compose.yaml is checked here, not run (no Docker engine on CI): pinned images or
our Dockerfiles, secrets by reference only (every ${VAR} documented in .env.example), the
services DESIGN.md names with healthchecks and ordered start-up, one definition shared by
the Airflow components, and the `compose` settings overlay the containers load."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import pytest
import yaml

from jobs.settings import REPO_ROOT, load_settings
from tests.unit.test_dockerfiles import instructions

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKER = REPO_ROOT / "docker"
POSTGRES_INIT = DOCKER / "postgres-init.sh"
DAG_PROBE = REPO_ROOT / "tests" / "dags" / "dagbag_probe.py"

AIRFLOW_COMPONENTS = {  # service -> `airflow` subcommand
    "airflow-api-server": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
AIRFLOW_SERVICES = ("airflow-init", *AIRFLOW_COMPONENTS)
LONG_RUNNING = ("postgres", "minio", "mlflow", *AIRFLOW_COMPONENTS)
ONE_SHOT = ("minio-init", "airflow-init")
# Environment variables whose value is a credential (a *_FILE / *_PATH names where one lives).
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
NOT_A_SECRET = re.compile(r"_(FILE|PATH)$")
# Compose interpolation, after `$$` (a literal $) has been taken out.
BRACED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
UNBRACED = re.compile(r"\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
ESCAPED_DOLLAR = "\0"


# Helpers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, value) of every string in the parsed file (comments are not values)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


def interpolations(compose) -> list[tuple[str, re.Match]]:
    found = []
    for path, value in strings(compose):
        for match in BRACED.finditer(value.replace("$$", ESCAPED_DOLLAR)):
            found.append((path, match))
    return found


def braced_names(value: str) -> str:
    """`value` with each interpolation shortened to `${NAME}` (messages and defaults dropped)."""
    return BRACED.sub(lambda match: "${" + match["name"] + "}", value.replace("$$", ESCAPED_DOLLAR))


def url(value: str):
    """urlparse of a compose value, its interpolations standing for their values."""
    return urlparse(BRACED.sub(lambda match: match["name"].lower(), value))


def unescape(value: str) -> str:
    """What the container sees of a literal string: compose turns `$$` into `$`."""
    return value.replace("$$", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def env_example() -> dict[str, str]:
    entries = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not NAME=value"
            entries[name.strip()] = value.strip()
    return entries


def command(service: dict[str, Any]) -> list[str]:
    value = service.get("command") or []
    return value.split() if isinstance(value, str) else [str(part) for part in value]


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} not in {argv}"
    return argv[argv.index(name) + 1]


def image_is_pinned(image: str) -> bool:
    name, _, tag = image.rsplit("/", 1)[-1].partition(":")
    return "@sha256:" in image or bool(tag and tag != "latest" and re.search(r"\d", tag))


# The file parses and holds the services of the design ---------------------------------------

def test_compose_file_is_valid_by_the_compose_specification():
    """The Compose Specification's JSON schema (vendored in check-jsonschema), as `docker compose config` checks."""
    import shutil

    tool = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which("check-jsonschema")
    assert tool, "check-jsonschema (requirements.txt) is not installed"
    done = subprocess.run([tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_file_parses(compose):
    assert isinstance(compose.get("services"), dict) and compose["services"]
    assert isinstance(compose.get("volumes"), dict)
    for name, service in compose["services"].items():
        assert service.get("image") or service.get("build"), f"{name}: neither image nor build"


def test_services_named_by_the_design_exist(services):
    assert set(services) >= {"postgres", "minio", "minio-init", "mlflow", *AIRFLOW_SERVICES}


def test_airflow_runs_as_its_four_components_on_the_local_executor(services):
    for service, subcommand in AIRFLOW_COMPONENTS.items():
        assert command(services[service]) == ["airflow", subcommand], service
        env = environment(services[service])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).scheme.startswith("postgresql")
    init = services["airflow-init"]
    script = unescape(command(init)[-1]) if command(init)[:2] == ["bash", "-ec"] else ""
    assert "airflow db migrate" in script, "airflow-init must migrate the metadata database"
    assert "AIRFLOW_ADMIN_PASSWORD" in script and "AIRFLOW_ADMIN_PASSWORD" in environment(init)


def test_airflow_and_mlflow_have_separate_databases_on_the_postgres_service(services):
    airflow = url(environment(services["airflow-scheduler"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    mlflow = url(environment(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"])
    for parsed in (airflow, mlflow):
        assert parsed.scheme.startswith("postgresql") and parsed.hostname == "postgres" and parsed.port == 5432
    assert (airflow.username, airflow.path) == ("airflow", "/airflow")
    assert (mlflow.username, mlflow.path) == ("mlflow", "/mlflow")


def test_mlflow_server_on_postgres_with_s3_artifacts(services):
    mlflow = services["mlflow"]
    argv = command(mlflow)
    assert argv[:2] == ["mlflow", "server"]
    assert option(argv, "--workers") == "1"
    assert option(argv, "--host") == "0.0.0.0"
    assert option(argv, "--artifacts-destination").startswith("s3://")
    assert "--serve-artifacts" in argv
    env = environment(mlflow)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "--backend-store-uri" not in argv, "the backend URI holds a password: pass it by environment"


def test_buckets_used_are_created_by_minio_init(services):
    script = unescape(command(services["minio-init"])[-1])
    created = set(re.findall(r"local/([a-z0-9.-]+)", re.search(r"^mc mb .*$", script, re.M).group(0)))
    lake_bucket = urlparse(load_settings("compose").lake_root).netloc
    artifacts_bucket = urlparse(option(command(services["mlflow"]), "--artifacts-destination")).netloc
    assert {lake_bucket, artifacts_bucket} <= created
    assert services["minio-init"]["image"].split(":")[0].endswith("minio/mc")


def test_one_shot_scripts_are_valid_shell(services):
    for name, shell in (("minio-init", "sh"), ("airflow-init", "bash")):
        script = unescape(command(services[name])[-1])
        subprocess.run([shell, "-n"], input=script, text=True, check=True)


# Images ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["postgres", "minio", "minio-init", "mlflow", *AIRFLOW_SERVICES])
def test_every_image_is_pinned_or_built_from_our_dockerfiles(services, name):
    service = services[name]
    image = service.get("image", "")
    assert "$" not in image, f"{name}: the image must not depend on the environment"
    if "build" in service:
        build = service["build"]
        dockerfile = REPO_ROOT / build.get("context", ".") / build["dockerfile"]
        assert dockerfile.parent == DOCKER and dockerfile.name.endswith(".Dockerfile") and dockerfile.exists(), (
            f"{name}: builds {dockerfile}, not a Dockerfile in docker/")
    assert image and image_is_pinned(image), f"{name}: image {image!r} is not pinned to a version"


def test_our_image_is_the_jobs_image_of_the_settings(compose, services):
    pipeline = compose["x-pipeline-image"]
    assert pipeline["build"]["dockerfile"] == "docker/jobs.Dockerfile"
    assert pipeline["image"] == load_settings("compose").runner.images["jobs"]
    for name in ("mlflow", *AIRFLOW_SERVICES):
        assert (services[name]["image"], services[name]["build"]) == (pipeline["image"], pipeline["build"]), name


def test_jobs_image_fits_what_compose_runs(compose, services):
    """The jobs image must start `airflow ...` / `mlflow ...` as given, carry what they need,
    and have the paths and user the compose file assumes."""
    steps = instructions(DOCKER / "jobs.Dockerfile")
    # The entrypoint runs any command other than the Spark roles as given.
    assert ("ENTRYPOINT", '["/opt/spark-entrypoint.sh"]') in steps
    entrypoint = (DOCKER / "spark-entrypoint.sh").read_text()
    assert re.search(r'^\s*\*\)\s*\n\s*exec /usr/bin/tini -s -- "\$@"', entrypoint, re.M)
    for name in ("mlflow", *AIRFLOW_SERVICES):
        assert command(services[name])[0] not in ("driver", "executor"), name
    # Airflow, MLflow and the PostgreSQL drivers come from requirements.txt.
    assert any(word == "RUN" and "-r requirements.txt" in args for word, args in steps)
    required = {re.split(r"[=<>\[]", line)[0].lower()
                for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {"apache-airflow", "mlflow", "psycopg2-binary", "asyncpg", "boto3"} <= required
    # The code lives under WORKDIR (jobs/settings.py's REPO_ROOT); config/ carries the overlay.
    workdir = [args for word, args in steps if word == "WORKDIR"][-1]
    copied = {args.split()[0] for word, args in steps if word == "COPY"}
    assert {"config", "jobs"} <= copied
    common = compose["x-airflow-common"]
    env = common["environment"]
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == f"{workdir}/dags"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == f"{workdir}/plugins"
    assert f"./dags:{workdir}/dags:ro" in common["volumes"]
    assert f"./plugins:{workdir}/plugins:ro" in common["volumes"]
    # airflow-init hands the shared volumes to the image's user.
    uid = re.search(r"useradd --uid (\d+)", (DOCKER / "jobs.Dockerfile").read_text()).group(1)
    assert f"chown -R {uid}:{uid}" in command(services["airflow-init"])[-1]
    assert env["AIRFLOW_HOME"].startswith("/home/pipeline/"), "AIRFLOW_HOME must be writable by the image's user"


# Secrets by reference --------------------------------------------------------------------------

def test_every_variable_used_is_listed_in_env_example(compose):
    used = {match["name"] for _, match in interpolations(compose)}
    listed = set(env_example())
    assert used - listed == set(), "add these to .env.example"
    assert listed - used == set(), ".env.example lists variables docker-compose.yaml does not use"


def test_no_unbraced_or_bare_interpolation(compose):
    """`$VAR` would be interpolated by compose from the host; a shell variable must be `$$VAR`."""
    for path, value in strings(compose):
        text = BRACED.sub("", value.replace("$$", ESCAPED_DOLLAR))
        assert not UNBRACED.search(text), f"{path}: {value!r} (use ${{VAR}} for .env, $$VAR for the shell)"


def test_variables_are_required_or_defaulted(compose):
    """A variable is either required (`:?message`, fails before anything starts) or has a default:
    never silently empty. Credentials are always required."""
    for path, match in interpolations(compose):
        op, arg = match["op"], match["arg"]
        assert op in (":?", ":-"), f"{path}: ${{{match['name']}}} must be ${{VAR:?message}} or ${{VAR:-default}}"
        if op == ":?":
            assert arg.strip(), f"{path}: {match.group(0)} needs a message"
        if SECRET_NAME.search(match["name"]) and not match["name"].endswith("ACCESS_KEY"):
            assert op == ":?", f"{path}: {match['name']} is a credential: no default"


@pytest.mark.parametrize("name", ["postgres", "minio", "minio-init", "mlflow", *AIRFLOW_SERVICES])
def test_credentials_in_the_environment_are_interpolations(services, name):
    for key, value in environment(services[name]).items():
        if SECRET_NAME.search(key) and not NOT_A_SECRET.search(key):
            assert BRACED.fullmatch(value), f"{name}: {key}={value!r} must be a ${{VAR:?...}} reference"


def test_no_literal_credentials_anywhere(compose):
    urls_with_userinfo = 0
    for path, value in strings(compose):
        value = braced_names(value)
        for address in re.findall(r"[a-z][a-z0-9+.-]*://[^\s\"'/]+", value):
            userinfo, at, _ = address.split("://", 1)[1].rpartition("@")
            if at and ":" in userinfo:
                urls_with_userinfo += 1
                password = userinfo.split(":", 1)[1]
                assert re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*\}", password), f"{path}: literal password in {address!r}"
        assert not re.search(r"(?i)(password|secret)\s*[=:]\s*[\"']?[A-Za-z0-9]", value), (
            f"{path}: looks like a literal secret: {value!r}")
    assert urls_with_userinfo >= 2, "the database URLs were not seen: the check would be vacuous"


def test_env_example_leaves_every_credential_blank():
    """A copied but unedited .env cannot start a stack with a published password."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        name, sep, value = line.partition("=")
        if line.startswith("#") or not sep or not SECRET_NAME.search(name) or name.endswith("ACCESS_KEY"):
            continue
        assert value == "", f".env.example: {name} must be left blank (it is a credential)"
        comments = []
        for previous in reversed(lines[:index]):
            if not previous.startswith("#"):
                break
            comments.append(previous)
        assert any("CHANGE ME" in comment for comment in comments), f".env.example: mark {name} as CHANGE ME"


def test_dot_env_is_git_ignored_and_the_example_is_not():
    def ignored(path: str) -> bool:
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT)
        assert result.returncode in (0, 1), "git check-ignore failed"
        return result.returncode == 0

    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    assert ignored(".env")
    assert not ignored(".env.example")


def test_published_ports_are_on_loopback_by_default(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("${BIND_ADDRESS:-127.0.0.1}:"), f"{name}: {port}"
    assert "ports" not in services["postgres"], "PostgreSQL is reached by the services only"


# Health and start-up order ---------------------------------------------------------------------

@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_a_healthcheck_and_restart(services, name):
    service = services[name]
    test = service.get("healthcheck", {}).get("test")
    assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: no healthcheck"
    assert service.get("restart") == "unless-stopped"


@pytest.mark.parametrize("name", ONE_SHOT)
def test_one_shot_services_do_not_restart(services, name):
    assert services[name].get("restart") == "no"
    assert "healthcheck" not in services[name]


def test_depends_on_conditions_reference_real_services(services):
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name a condition per service"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health, it has none"
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} waits for {target} to exit, it is long-running"
            else:
                pytest.fail(f"{name} -> {target}: condition {condition!r}")


def test_start_up_order_has_no_cycle(services):
    order, visiting, done = [], set(), set()

    def visit(name: str) -> None:
        assert name not in visiting, f"depends_on cycle through {name}"
        if name in done:
            return
        visiting.add(name)
        for target in services[name].get("depends_on", {}):
            visit(target)
        visiting.discard(name)
        done.add(name)
        order.append(name)

    for name in services:
        visit(name)
    assert order.index("postgres") < order.index("airflow-init") < order.index("airflow-scheduler")


def test_start_up_waits_for_what_each_service_needs(services):
    def waits(name: str) -> dict[str, str]:
        return {target: spec["condition"] for target, spec in services[name]["depends_on"].items()}

    assert waits("minio-init") == {"minio": "service_healthy"}
    assert waits("mlflow") == {"postgres": "service_healthy", "minio-init": "service_completed_successfully"}
    assert waits("airflow-init")["postgres"] == "service_healthy"
    for name in AIRFLOW_COMPONENTS:
        assert waits(name).items() >= {"postgres": "service_healthy", "airflow-init": "service_completed_successfully",
                                       "mlflow": "service_healthy", "minio-init": "service_completed_successfully"}.items(), name
    assert waits("airflow-scheduler")["airflow-api-server"] == "service_healthy"


# One definition for Airflow --------------------------------------------------------------------

def test_airflow_services_have_the_same_image_environment_and_volumes(compose, services):
    common = compose["x-airflow-common"]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["image"] == common["image"] and service["build"] == common["build"], name
        assert service["volumes"] == common["volumes"], name
        env = environment(service)
        assert {key: env.get(key) for key in common["environment"]} == environment(common), name
    # Only the init job sees the admin's password; the components read the file it writes.
    for name in AIRFLOW_COMPONENTS:
        assert "AIRFLOW_ADMIN_PASSWORD" not in environment(services[name])


def test_components_reach_each_other_by_service_name(compose, services):
    env = environment(compose["x-airflow-common"])
    execution = urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution.hostname in services and execution.path == "/execution/"
    assert str(execution.port) == env["AIRFLOW__API__PORT"]
    assert any(str(port).endswith(f":{execution.port}") for port in services[execution.hostname]["ports"])
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert BRACED.fullmatch(env[key]), f"{key} must be shared by every component, from .env"


# The settings the containers load --------------------------------------------------------------

def test_compose_overlay_loads_and_points_at_the_services(compose, services):
    settings = load_settings("compose")
    assert settings.env == "compose"
    assert settings.runner.kind == "subprocess"
    assert settings.lake_root.startswith("s3://") and urlparse(settings.lake_root).path.strip("/")
    endpoint = urlparse(settings.lake.s3_endpoint_url)
    assert endpoint.hostname == "minio" and endpoint.port == 9000
    tracking = urlparse(settings.mlflow.tracking_uri)
    assert tracking.hostname == "mlflow" and str(tracking.port) == option(command(services["mlflow"]), "--port")
    assert environment(compose["x-airflow-common"])["PIPELINE_ENV"] == "compose"
    # Lake and MLflow settings come from the overlay, not from an environment override.
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        assert not {"LAKE_ROOT", "MLFLOW_TRACKING_URI"} & set(env), name
        assert not [key for key in env if key.startswith("PIPELINE__")], name


def test_compose_overlay_names_no_credential():
    text = (REPO_ROOT / "config" / "overlays" / "compose.yaml").read_text()
    assert not re.search(r"(?i)^\s*[a-z_]*(password|secret|token|access_key)[a-z_]*\s*:", text, re.M)


def test_dags_parse_with_the_compose_settings(tmp_path):
    """The dag-processor of the stack parses the folder with PIPELINE_ENV=compose: no import error,
    no secret read at parse, and the steps run in the worker (subprocess runner)."""
    dags = REPO_ROOT / "dags"
    environ = {key: value for key, value in os.environ.items()
               if key not in ("PIPELINE_ENV", "LAKE_ROOT", "MLFLOW_TRACKING_URI", "PYTHONPATH")
               and not key.startswith(("PIPELINE__", "AIRFLOW__"))}
    environ.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                    "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "PIPELINE_ENV": "compose"})
    report_path = tmp_path / "report.json"
    process = subprocess.run([sys.executable, str(DAG_PROBE), str(dags), str(dags), str(report_path)],
                             cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=240)
    assert process.returncode == 0 and report_path.exists(), (process.stdout + process.stderr)[-4000:]
    report = json.loads(report_path.read_text())
    assert report["import_errors"] == {}, "\n".join(report["import_errors"].values())
    assert report["serialization_errors"] == {}
    assert report["secret_reads"] == []
    assert report["dags"]
    operators = {task["operator"] for dag in report["dags"].values() for task in dag["tasks"]}
    assert any(op.endswith("SubprocessStepOperator") for op in operators)
    assert not [op for op in operators if op.endswith(("PodStepOperator", "SparkStepOperator"))]


# PostgreSQL's init script ---------------------------------------------------------------------

def test_postgres_init_script_creates_the_databases_the_services_use(services):
    postgres = services["postgres"]
    assert f"./docker/{POSTGRES_INIT.name}:/docker-entrypoint-initdb.d/10-pipeline-databases.sh:ro" in (
        postgres["volumes"])
    subprocess.run(["bash", "-n", str(POSTGRES_INIT)], check=True)
    assert POSTGRES_INIT.stat().st_mode & 0o111, "executable, so the entrypoint runs it instead of sourcing it"
    script = POSTGRES_INIT.read_text()
    for database in ("airflow", "mlflow"):
        assert f"CREATE ROLE {database} LOGIN PASSWORD :'{database}_password';" in script
        assert f"CREATE DATABASE {database} OWNER {database};" in script
    read = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", script))
    env = environment(postgres)
    assert read - {"POSTGRES_USER", "POSTGRES_DB"} <= set(env), "the script reads variables postgres is not given"
    assert {"POSTGRES_USER", "POSTGRES_DB"} <= set(env)
    assert env["AIRFLOW_DB_PASSWORD"] == environment(services["airflow-init"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] \
        .split("airflow:", 1)[1].split("@postgres", 1)[0]
    assert env["MLFLOW_DB_PASSWORD"] == environment(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"] \
        .split("mlflow:", 1)[1].split("@postgres", 1)[0]
