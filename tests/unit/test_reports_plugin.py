"""The reports plugin serves the lake's reports/ zone (local and S3) behind Airflow's login."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import pipeline_links
import pipeline_reports  # the plugins folder is on the tests' path (pyproject.toml), as on Airflow's
from airflow.api_fastapi.core_api.security import get_user
from jobs.health import MlflowLinks


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


class Key:
    def __init__(self, task_id, dag_id="delay_model_training", run_id="manual__1", map_index=-1):
        self.task_id, self.dag_id, self.run_id, self.map_index = task_id, dag_id, run_id, map_index


def _links(key: Key) -> dict[str, str]:
    return {link.name: link.get_link(None, ti_key=key) for link in pipeline_links.LINKS
            if link.get_link(None, ti_key=key)}


def test_each_task_shows_the_links_to_what_it_made_and_no_other():
    assert set(_links(Key("weather.validate_and_publish", "flights_ingest"))) == {"Data Docs"}
    assert set(_links(Key("train"))) == {"Model version", "MLflow run"}
    assert set(_links(Key("evaluate_and_gate"))) == {"Model card", "MLflow run"}
    assert set(_links(Key("monitor", "delay_model_monitoring"))) == {"Drift report", "MLflow run"}
    assert set(_links(Key("backtest", "delay_model_backtest"))) == {"Backtest report"}
    assert _links(Key("weather.wait_for_landing", "flights_ingest")) == {}
    assert _links(Key("monitor", "other_dag")) == {}
    link = _links(Key("evaluate_and_gate", run_id="manual__2013-03-01T00:00:00+00:00"))["Model card"]
    assert link == ("/pipeline/artifact/model-card?dag_id=delay_model_training&"
                    "run_id=manual__2013-03-01T00%3A00%3A00%2B00%3A00&task_id=evaluate_and_gate&map_index=-1")
    assert pipeline_reports.PipelineReportsPlugin.global_operator_extra_links is pipeline_links.LINKS


def _url(kind, results):
    return pipeline_links.artifact_url(kind, results, mlflow_links=MlflowLinks("http://mlflow:5000", "flight_delay"),
                                       experiment_of=lambda run_id: "3")


def test_a_link_leads_to_the_artifact_of_that_run():
    assert _url("data-docs", [{"feed": "weather", "ds": "2013-01-05", "report_uri": "s3://b/x"}]) == (
        "/pipeline/reports/validation/weather/date=2013-01-05/index.html")
    assert _url("model-card", [{"model_card_key": "reports/training/flight_delay/version=4/model_card.html"}]) == (
        "/pipeline/reports/training/flight_delay/version=4/model_card.html")
    assert _url("drift-report", [{"report_key": "reports/drift/2013-03-01/data_drift.html"}]) == (
        "/pipeline/reports/drift/2013-03-01/data_drift.html")
    assert _url("model-version", [{"model_version": "4"}]) == "http://mlflow:5000/#/models/flight_delay/versions/4"
    assert _url("mlflow-run", [{"run_id": "abc"}]) == "http://mlflow:5000/#/experiments/3/runs/abc"


@pytest.mark.parametrize("kind, results, message", [
    ("model-card", None, "has no result"),
    ("model-card", [{"version": "4"}], "no 'model_card_key'"),
    ("data-docs", [{"feed": "weather", "ds": "2013-01-05", "report_uri": None}], "rejected before validation"),
    ("nonsense", [{"x": 1}], "unknown artifact"),
])
def test_a_link_without_its_artifact_says_what_is_missing(kind, results, message):
    with pytest.raises(pipeline_links.MissingArtifact, match=message):
        _url(kind, results)


def test_mlflow_links_need_a_web_address():
    links = MlflowLinks("sqlite:////tmp/mlflow.db", "flight_delay")
    with pytest.raises(pipeline_links.MissingArtifact, match="mlflow.ui_url"):
        pipeline_links.artifact_url("model-version", [{"model_version": "1"}], mlflow_links=links,
                                    experiment_of=lambda run_id: None)


def test_every_route_of_the_plugin_needs_a_login(local_lake, monkeypatch):
    """No page, report, lineage or artifact of the plugin answers without an Airflow login."""
    monkeypatch.setattr(pipeline_reports, "_lake", lambda: local_lake)
    paths = {route.path for route in pipeline_reports.app.routes if getattr(route, "endpoint", None) and
             route.path not in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")}
    assert {"/reports/{path:path}", "/health", "/api/health", "/api/lineage", "/artifact/{kind}"} <= paths
    client = TestClient(pipeline_reports.app)
    for path in paths:
        url = path.replace("{path:path}", "x").replace("{kind}", "model-card")
        assert client.get(url, params={"ds": "2013-01-07", "dag_id": "d", "run_id": "r", "task_id": "t"}
                          ).status_code == 401, path


def test_reports_are_served_sandboxed(client, lake):
    lake.write_text("reports/drift/2013-01-07/data_drift.html", "<script>fetch('/api/v2/dags')</script>")
    response = client.get("/reports/drift/2013-01-07/data_drift.html")
    assert response.headers["content-security-policy"].startswith("sandbox")
    assert response.headers["x-content-type-options"] == "nosniff"

