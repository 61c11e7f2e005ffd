"""The bad-input matrix: every entry point refuses bad input with a message naming the problem, and loses nothing.

Entry points: the steps' CLIs, settings (files and environment overrides), the trigger forms' Params (the
schema the form and `POST /api/v2/dags/{dag_id}/dagRuns` enforce before any task runs) and the plugin's URLs.
For the CLIs the lake is fingerprinted before and after: a refused command changes no byte of it.
README's table counts the cases below (MATRIX).
"""
from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import pipeline_reports
from airflow.api_fastapi.core_api.security import get_user
from jobs.lake import Lake
from jobs.settings import SettingsError, load_settings

TRAVERSAL = "../../etc/passwd"
INJECTION = "2013-03-01; rm -rf /"

# (module, argv, what stderr must name)
CLI_CASES = [
    ("jobs.ingest", ["--ds", TRAVERSAL], "invalid fromisoformat value"),
    ("jobs.ingest", ["--ds", "2013-03-01", "--feed", "passwd"], "invalid choice: 'passwd'"),
    ("jobs.features", ["--ds", INJECTION], "invalid fromisoformat value"),
    ("jobs.features", ["--ds", "2013-02-30"], "invalid fromisoformat value"),
    ("jobs.score", ["--ds", "2013-03-01", "--days", "0"], "--days must be at least 1"),
    ("jobs.score", ["--ds", "2013-03-01", "--days", "-5"], "--days must be at least 1"),
    ("jobs.publish", ["--ds", "2013-03-01", "--days", "-1"], "--days must be at least 1"),
    ("jobs.publish", ["--ds", "2013-03-01", "--corrupt", "$(reboot)"], "invalid choice"),
    ("jobs.monitor", ["--ds", "2013-13-01"], "invalid fromisoformat value"),
    ("jobs.train", ["--start", "2013-03-01", "--end", "2013-02-01", "--holdout-start", "2013-03-02",
                    "--holdout-end", "2013-03-03"], "training window ends (2013-02-01) before it starts"),
    ("jobs.train", ["--start", "2013-01-01", "--end", "2013-02-01", "--holdout-start", "2013-02-02",
                    "--holdout-end", "2013-02-08", "--epochs", "-3"], "epochs"),
    ("jobs.training_set", ["--train-start", "x", "--train-end", "2013-02-01", "--holdout-start", "2013-02-02",
                           "--holdout-end", "2013-02-08"], "invalid fromisoformat value"),
    ("jobs.registry", ["promote", "--version", "abc", "--reason", "x"], "a model version is a positive integer"),
    ("jobs.registry", ["promote", "--version", "-1", "--reason", "x"], "a model version is a positive integer"),
    ("jobs.evaluate", ["--version", TRAVERSAL], "a model version is a positive integer"),
    ("jobs.health", ["--days", "0"], "--days must be between 1 and 366"),
    ("jobs.lineage", ["--ds", "2013-03-01", "--flight", "UA", "x1", "EWR"], "the flight number must be digits"),
]
CLI_MODULES = {"jobs.publish": "jobs.upstream.publish", "jobs.features": "jobs.features.cli"}

# (environment overrides, what the error must name)
SETTINGS_CASES = [
    ({"PIPELINE__INGEST__MAX_BAD_ROW_FRACTION": "2"}, "ingest.max_bad_row_fraction"),
    ({"PIPELINE__INGEST__MAX_BAD_ROW_FRACTION": "lots"}, "ingest.max_bad_row_fraction"),
    ({"PIPELINE__GATE__AUC_FLOOR": "-1"}, "gate.auc_floor"),
    ({"PIPELINE__NOPE__X": "1"}, "nope"),
    ({"PIPELINE__TRAINING__EPOCHS": "0"}, "training.epochs"),
    ({"PIPELINE__MLFLOW__UI_URL": "javascript:alert(1)"}, "mlflow.ui_url"),
    ({"PIPELINE__NOTIFICATIONS__TO": "['not-an-address']"}, "notifications"),
    ({"PIPELINE__SPARK__CONF": "{\"no.spark.prefix\": \"1\"}"}, "spark.conf"),
]

# (DAG, param, bad value, what the schema error must name)
PARAM_CASES = [
    ("delay_model_training", "train_start", TRAVERSAL, "train_start"),
    ("delay_model_training", "holdout_end", "2014-01-01", "holdout_end"),
    ("delay_model_training", "epochs", -1, "epochs"),
    ("delay_model_training", "epochs", "six", "epochs"),
    ("delay_model_training", "family", "rm -rf", "family"),
    ("delay_model_training", "learning_rate", 0, "learning_rate"),
    ("delay_model_training", "reason", "x" * 2001, "reason"),
    ("delay_model_backtest", "start", INJECTION, "start"),
    ("delay_model_rollback", "reason", "", "reason"),
    ("replay_publisher", "start", "2012-12-31", "start"),
    ("replay_publisher", "days", 0, "days"),
    ("replay_publisher", "feeds", ["schedule", "passwd"], "feeds"),
    ("replay_publisher", "corrupt", "../x", "corrupt"),
]

# (URL, expected status)
URL_CASES = [
    ("/reports/..%2F..%2Flanding/schedule/2013-01-05.csv", (400, 404)),
    ("/reports/%2e%2e/%2e%2e/etc/passwd", (400, 404)),
    ("/reports//etc/passwd", (404,)),
    ("/reports/a%5C..%5C..%5Cetc%5Cpasswd", (404,)),
    ("/reports/x%00.html", (404,)),
    ("/health?days=-1", (422,)),
    ("/api/health?end=../../etc", (422,)),
    ("/api/health?days=1e9", (422,)),
    ("/api/lineage?ds=2013-03-01%27%20OR%201=1", (422,)),
    ("/api/lineage", (422,)),
]

MATRIX = {"CLI arguments": len(CLI_CASES), "settings and environment overrides": len(SETTINGS_CASES),
          "trigger Params (form and REST API)": len(PARAM_CASES), "plugin URLs": len(URL_CASES)}


def _fingerprint(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def guarded_lake(tmp_path, monkeypatch):
    """A lake with something in every zone the steps write, and an MLflow nobody should reach."""
    lake = Lake(str(tmp_path / "lake"))
    for key in ("landing/schedule/2013-03-01.csv", "raw/schedule/date=2013-03-01/part-0.parquet",
                "features/flights/date=2013-03-01/part-0.parquet", "reports/drift/2013-03-01/summary.json"):
        lake.write_bytes(key, f"content of {key}".encode())
    monkeypatch.setenv("LAKE_ROOT", lake.root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    return tmp_path / "lake"


@pytest.mark.parametrize("module, argv, problem", CLI_CASES, ids=[f"{m} {' '.join(a)[:40]}" for m, a, _ in CLI_CASES])
def test_a_cli_refuses_bad_arguments_naming_them_and_changes_nothing(module, argv, problem, guarded_lake, capsys):
    before = _fingerprint(guarded_lake)
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(CLI_MODULES.get(module, module)).main(argv)
    assert exited.value.code == 2
    assert problem in capsys.readouterr().err
    assert _fingerprint(guarded_lake) == before


@pytest.mark.parametrize("overrides, key", SETTINGS_CASES, ids=[next(iter(o)) + "=" + next(iter(o.values()))[:20]
                                                                 for o, _ in SETTINGS_CASES])
def test_a_bad_setting_is_refused_naming_its_key(overrides, key, monkeypatch):
    for name, value in overrides.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load_settings("local")
    assert key in str(refused.value)


@pytest.mark.parametrize("dag_id, param, value, name", PARAM_CASES,
                         ids=[f"{d}.{p}={str(v)[:20]}" for d, p, v, _ in PARAM_CASES])
def test_a_trigger_param_out_of_its_schema_is_refused_before_any_task(load_dag, dag_id, param, value, name):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(load_dag(dag_id).params)
    with pytest.raises(ParamValidationError, match=name):
        params[param] = value
        params.validate()


@pytest.mark.parametrize("url, statuses", URL_CASES, ids=[u[:50] for u, _ in URL_CASES])
def test_a_bad_plugin_url_is_a_4xx_that_serves_nothing_outside_reports(url, statuses, guarded_lake, monkeypatch):
    monkeypatch.setattr(pipeline_reports, "_lake", lambda: Lake(str(guarded_lake)))
    pipeline_reports.app.dependency_overrides[get_user] = lambda: object()
    try:
        response = TestClient(pipeline_reports.app).get(url)
    finally:
        pipeline_reports.app.dependency_overrides.clear()
    assert response.status_code in statuses, response.text
    assert "content of landing" not in response.text and "root:" not in response.text
    assert "Traceback" not in response.text
