"""The model-health view (jobs.health) and its page (/pipeline/health) on a real registry and lake.

The lake and MLflow are copies of the served model's (tests/unit/conftest.py): a champion trained by
jobs.train, its model card written by jobs.evaluate, two days scored by jobs.score and monitored by
jobs.monitor, and a delivery quarantined by jobs.ingest. What is asserted is what those steps wrote.
"""
from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

import pipeline_reports
from airflow.api_fastapi.core_api.security import get_user
from jobs.health import main, model_health
from jobs.lake import Lake
from tests.unit.conftest import settings_with


@pytest.fixture
def healthy(health_data):
    return health_data


@pytest.fixture
def page(healthy, monkeypatch):
    monkeypatch.setattr(pipeline_reports, "_lake", lambda: healthy["lake"])
    monkeypatch.setattr(pipeline_reports, "_settings", lambda: healthy["settings"])
    pipeline_reports.app.dependency_overrides[get_user] = lambda: object()
    yield TestClient(pipeline_reports.app)
    pipeline_reports.app.dependency_overrides.clear()


def test_the_view_holds_the_champion_its_card_the_served_days_and_the_quarantine(healthy):
    health = model_health(healthy["lake"], healthy["settings"])
    champion = next(card for card in health["aliases"] if card["alias"] == "champion")
    card = healthy["lake"].read_json(f"reports/training/flight_delay/version={healthy['version']}/model_card.json")

    assert health["has_model"] and champion["version"] == healthy["version"]
    assert champion["holdout"]["roc_auc"] == card["models"]["candidate"]["metrics"]["roc_auc"]
    assert champion["gate_passed"] == card["decision"]["passed"]
    assert champion["model_card_key"].endswith(f"version={healthy['version']}/model_card.html")
    assert [day["ds"] for day in health["days"]] == ["2013-01-06", "2013-01-07"]
    assert all(day["version"] == healthy["version"] for day in health["days"])
    assert health["days"][-1]["served_auc"] is not None, "labels of Jan 6 arrived by Jan 7"
    assert health["quarantine"] == [], "the window ends at the newest monitored day (Jan 7)"
    wide = model_health(healthy["lake"], healthy["settings"], end=dt.date(2013, 1, 8))
    [row] = wide["quarantine"]
    assert (row["feed"], row["ds"], row["status"]) == ("weather", "2013-01-08", "passed_with_quarantined_rows")
    assert row["quarantined_rows"] == 1


def test_an_empty_registry_is_a_view_with_no_model(tmp_path):
    settings = settings_with(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "lake"))
    health = model_health(Lake(str(tmp_path / "lake")), settings)
    assert not health["has_model"] and health["days"] == [] and health["trainings"] == []


def test_the_page_shows_cards_chart_days_and_links_to_reports(page, healthy):
    response = page.get("/health")
    assert response.status_code == 200
    text = response.text
    assert f"champion: v{healthy['version']}" in text and "<svg" in text
    assert 'href="/pipeline/reports/training/flight_delay/version=' in text
    assert 'href="/pipeline/reports/drift/2013-01-07/data_drift.html"' in text
    assert page.get("/reports/drift/2013-01-07/data_drift.html").status_code == 200, "the link resolves"
    assert 'href="/pipeline/api/lineage?ds=2013-01-07"' in text
    graph = page.get("/api/lineage?ds=2013-01-07").json()
    assert graph["model"]["version"] == healthy["version"] and graph["features"]["state"] == "current"
    missing = page.get("/api/lineage?ds=2013-03-01")
    assert missing.status_code == 404 and "no predictions for 2013-03-01" in missing.json()["detail"]
    assert page.get("/api/lineage?ds=../../etc").status_code == 422


def test_the_page_says_no_model_yet_on_an_empty_registry(page, tmp_path, monkeypatch):
    empty = settings_with(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "lake"))
    monkeypatch.setattr(pipeline_reports, "_lake", lambda: Lake(str(tmp_path / "lake")))
    monkeypatch.setattr(pipeline_reports, "_settings", lambda: empty)
    response = page.get("/health")
    assert response.status_code == 200 and 'id="no-model"' in response.text and "No model yet" in response.text


@pytest.mark.parametrize("query, problem", [
    ("days=0", "greater than or equal to 1"), ("days=400", "less than or equal to 366"),
    ("days=abc", "valid integer"), ("end=2013-02-30", "date"), ("end=../../etc", "date"),
])
def test_bad_parameters_are_a_422_naming_the_parameter(page, query, problem):
    response = page.get(f"/api/health?{query}")
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"][-1] == query.split("=")[0] and problem in detail["msg"]
    assert "Traceback" not in response.text


def test_mlflow_unreachable_is_a_503_naming_its_uri(page, healthy, monkeypatch):
    dead = settings_with("http://127.0.0.1:9", healthy["lake"].root)
    monkeypatch.setattr(pipeline_reports, "_settings", lambda: dead)
    response = page.get("/api/health")
    assert response.status_code == 503 and "http://127.0.0.1:9" in response.json()["detail"]


def test_the_health_api_needs_a_login(healthy, monkeypatch):
    monkeypatch.setattr(pipeline_reports, "_lake", lambda: healthy["lake"])
    for path in ("/health", "/api/health"):
        assert TestClient(pipeline_reports.app).get(path).status_code == 401


def test_the_cli_prints_the_view(healthy, monkeypatch, capsys):
    monkeypatch.setenv("LAKE_ROOT", healthy["lake"].root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", healthy["settings"].mlflow.tracking_uri)
    assert main(["--days", "7"]) == 0
    out = capsys.readouterr().out
    assert f"champion   v{healthy['version']}" in out and "2013-01-07" in out
    with pytest.raises(SystemExit) as exited:
        main(["--days", "0"])
    assert exited.value.code == 2
