"""Airflow plugin: the model's health and the lake's reports, served inside the Airflow UI.

`/pipeline/health` ("Model health" in the navigation) shows champion, challenger and
previous with their holdout metrics and gate reasons, served ROC AUC and drift by day with
training and promotion markers, every training and the quarantine (jobs.health gathers it
from MLflow and the lake); `/pipeline/api/health` is the same as JSON.

Validation Data Docs, model cards and drift reports are written to the
lake under `reports/`, which may be a local folder or S3, where a browser cannot
open them. This plugin mounts a small FastAPI app on the API server at
`/pipeline` that reads them through the same lake module the jobs use, adds a
"Pipeline reports" entry to the UI's navigation, and a "Validation report" link
on every validate-and-publish task ("Model cards" on evaluate_and_gate, "Drift
reports" on monitor). Requests need an Airflow login (the UI's
session cookie or a bearer token).
"""
from __future__ import annotations

import datetime as dt
import html
import mimetypes
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from airflow.api_fastapi.core_api.security import get_user
from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

URL_PREFIX = "/pipeline"
SERVED_ZONE = "reports"

app = FastAPI(title="Pipeline reports", description="Reports from the lake's reports/ zone.")


def _lake():
    from jobs.lake import Lake

    return Lake.from_settings()


def _settings():
    from jobs.settings import get_settings

    return get_settings()


Days = Annotated[int, Query(ge=1, le=366, description="served days shown, ending at `end` (1..366)")]
End = Annotated[dt.date | None, Query(description="last flight date shown (default: the newest monitored)")]


def _health(days: int, end: dt.date | None) -> dict[str, Any]:
    from jobs.health import model_health
    from jobs.registry import MlflowUnreachable

    try:
        return model_health(_lake(), _settings(), days=days, end=end)
    except MlflowUnreachable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None


@app.get("/health", dependencies=[Depends(get_user)], response_class=HTMLResponse)
def health_page(days: Days = 30, end: End = None) -> HTMLResponse:
    """The model-health page."""
    from jobs.health import render_html

    health = _health(days, end)
    return HTMLResponse(render_html(health, reports_url=f"{URL_PREFIX}/reports", api_url=f"{URL_PREFIX}/api/health"))


@app.get("/api/health", dependencies=[Depends(get_user)])
def health_json(days: Days = 30, end: End = None) -> JSONResponse:
    """The model-health view as JSON (what the page shows)."""
    return JSONResponse(_health(days, end))


def _safe_key(path: str) -> str:
    parts = [part for part in path.strip("/").split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise HTTPException(status_code=400, detail="path must not contain . or .. segments")
    return "/".join([SERVED_ZONE, *parts])


def _listing(prefix: str, keys: list[str]) -> str:
    """An index of the report folders and files directly below `prefix`."""
    children: dict[str, bool] = {}
    for key in keys:
        rest = key[len(prefix):].lstrip("/")
        head, sep, _ = rest.partition("/")
        children[head + ("/" if sep else "")] = True
    rows = "\n".join(
        f'<li><a href="{html.escape(name)}">{html.escape(name)}</a></li>' for name in sorted(children)
    )
    title = html.escape(prefix)
    return f"<!doctype html><title>{title}</title><h1>{title}</h1><ul>{rows}</ul>"


@app.get("/reports/{path:path}", dependencies=[Depends(get_user)])
def report(path: str = "") -> Response:
    key = _safe_key(path)
    lake = _lake()
    if key != SERVED_ZONE and not path.endswith("/") and lake.exists(key):
        media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return Response(lake.read_bytes(key), media_type=media_type)
    keys = lake.list(key)
    if not keys:
        raise HTTPException(status_code=404, detail=f"no report at {lake.uri(key)}")
    return HTMLResponse(_listing(key, keys))


class ValidationReportLink(BaseOperatorLink):
    """From a validate-and-publish task to its feed's validation reports."""

    name = "Validation report"

    def get_link(self, operator, *, ti_key) -> str:
        # Registered globally (DAG code must not import plugins); empty elsewhere, so hidden.
        if not ti_key.task_id.endswith(".validate_and_publish"):
            return ""
        feed = ti_key.task_id.split(".", 1)[0]
        return f"{URL_PREFIX}/reports/validation/{feed}/"


class ModelCardsLink(BaseOperatorLink):
    """From a training run's evaluate-and-gate task to the model cards of the model."""

    name = "Model cards"

    def get_link(self, operator, *, ti_key) -> str:
        if ti_key.task_id != "evaluate_and_gate":
            return ""
        from jobs.settings import get_settings

        return f"{URL_PREFIX}/reports/training/{get_settings().mlflow.model_name}/"


class DriftReportsLink(BaseOperatorLink):
    """From a monitoring run's monitor task to the drift reports (one folder per flight date)."""

    name = "Drift reports"

    def get_link(self, operator, *, ti_key) -> str:
        if ti_key.task_id != "monitor" or getattr(ti_key, "dag_id", "delay_model_monitoring") != "delay_model_monitoring":
            return ""
        return f"{URL_PREFIX}/reports/drift/"


class PipelineReportsPlugin(AirflowPlugin):
    name = "pipeline_reports"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Pipeline reports"}]
    external_views = [
        {
            "name": "Model health",
            "href": f"{URL_PREFIX}/health",
            "destination": "nav",
            "category": "browse",
            "url_route": "model_health",
        },
        {
            "name": "Pipeline reports",
            "href": f"{URL_PREFIX}/reports/",
            "destination": "nav",
            "category": "browse",
            "url_route": "pipeline_reports",
        }
    ]
    global_operator_extra_links = [ValidationReportLink(), ModelCardsLink(), DriftReportsLink()]
