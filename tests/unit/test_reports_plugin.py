"""The reports plugin serves the lake's reports/ zone (local and S3) behind Airflow's login."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import pipeline_reports  # the plugins folder is on the tests' path (pyproject.toml), as on Airflow's
from airflow.api_fastapi.core_api.security import get_user


@pytest.fixture
def client(lake, monkeypatch):
    monkeypatch.setattr(pipeline_reports, "_lake", lambda: lake)
    pipeline_reports.app.dependency_overrides[get_user] = lambda: object()
    yield TestClient(pipeline_reports.app)
    pipeline_reports.app.dependency_overrides.clear()


def test_serves_a_report_file_with_its_media_type(client, lake):
    lake.write_text("reports/validation/schedule/date=2013-01-05/index.html", "<h1>Data Docs</h1>")
    response = client.get("/reports/validation/schedule/date=2013-01-05/index.html")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == "<h1>Data Docs</h1>"


def test_lists_a_folder(client, lake):
    lake.write_text("reports/validation/schedule/date=2013-01-05/index.html", "x")
    lake.write_text("reports/validation/schedule/date=2013-01-06/validation_result.json", "{}")
    response = client.get("/reports/validation/schedule/")
    assert response.status_code == 200
    assert 'href="date=2013-01-05/"' in response.text and 'href="date=2013-01-06/"' in response.text


def test_missing_report_is_a_404_naming_the_lake_path(client, lake):
    response = client.get("/reports/validation/weather/date=2013-02-30/")
    assert response.status_code == 404
    assert "reports/validation/weather/date=2013-02-30" in response.json()["detail"]


def test_rejects_parent_segments(client, lake):
    lake.write_text("landing/schedule/2013-01-05.csv", "secret-ish")
    response = client.get("/reports/..%2Flanding/schedule/2013-01-05.csv")
    assert response.status_code in (400, 404)
    assert "secret-ish" not in response.text


def test_requires_an_airflow_login(local_lake, monkeypatch):
    monkeypatch.setattr(pipeline_reports, "_lake", lambda: local_lake)
    response = TestClient(pipeline_reports.app).get("/reports/")
    assert response.status_code == 401


def test_validation_link_only_on_validate_tasks():
    class Key:
        def __init__(self, task_id):
            self.task_id = task_id

    link = pipeline_reports.ValidationReportLink()
    assert link.get_link(None, ti_key=Key("weather.validate_and_publish")) == "/pipeline/reports/validation/weather/"
    assert link.get_link(None, ti_key=Key("weather.wait_for_landing")) == ""


def test_model_cards_link_only_on_the_gate_task():
    class Key:
        def __init__(self, task_id):
            self.task_id = task_id

    link = pipeline_reports.ModelCardsLink()
    assert link.get_link(None, ti_key=Key("evaluate_and_gate")) == "/pipeline/reports/training/flight_delay/"
    assert link.get_link(None, ti_key=Key("train")) == ""
    assert {type(x).__name__ for x in pipeline_reports.PipelineReportsPlugin.global_operator_extra_links} == {
        "ValidationReportLink", "ModelCardsLink", "DriftReportsLink"}


def test_drift_link_only_on_the_monitor_task():
    class Key:
        def __init__(self, task_id, dag_id="delay_model_monitoring"):
            self.task_id, self.dag_id = task_id, dag_id

    link = pipeline_reports.DriftReportsLink()
    assert link.get_link(None, ti_key=Key("monitor")) == "/pipeline/reports/drift/"
    assert link.get_link(None, ti_key=Key("retrain_decision")) == ""
    assert link.get_link(None, ti_key=Key("monitor", "other_dag")) == ""
