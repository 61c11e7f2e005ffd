"""Airflow plugin: the model's health and the lake's reports, served inside the Airflow UI.

`/pipeline/health` ("Model health" in the navigation) shows champion, challenger and
previous with their holdout metrics and gate reasons, served ROC AUC and drift by day with
training and promotion markers, every training and the quarantine (jobs.health gathers it
from MLflow and the lake); `/pipeline/api/health` is the same as JSON.

Validation Data Docs, model cards and drift reports are written to the
lake under `reports/`, which may be a local folder or S3, where a browser cannot
open them. This plugin mounts a small FastAPI app on the API server at
`/pipeline` that reads them through the same lake module the jobs use, adds a
"Pipeline reports" entry to the UI's navigation, and on each task the links to
what it made (pipeline_links.py: Data Docs, model version, MLflow run, model card,
drift report, backtest report). Requests need an Airflow login (the UI's
session cookie or a bearer token).
"""
from __future__ import annotations

import datetime as dt
import html
import mimetypes
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import get_user, requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from pipeline_links import BY_KIND, LINKS, MissingArtifact, artifact_url

URL_PREFIX = "/pipeline"
SERVED_ZONE = "reports"
REPORT_HEADERS = {"Content-Security-Policy": "sandbox allow-scripts allow-popups allow-downloads",
                  "X-Content-Type-Options": "nosniff"}

app = FastAPI(title="Pipeline reports", description="Reports from the lake's reports/ zone.")


def _lake():
    from jobs.lake import Lake

    return Lake.from_settings()


def _settings():
    from jobs.settings import get_settings

    return get_settings()


Days = Annotated[int, Query(ge=1, le=366, description="served days shown, ending at `end` (1..366)")]
End = Annotated[dt.date | None, Query(ge=dt.date(1900, 1, 1), le=dt.date(2999, 12, 31),
                                     description="last flight date shown (default: the newest monitored)")]


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
    return HTMLResponse(render_html(health, reports_url=f"{URL_PREFIX}/reports", api_url=f"{URL_PREFIX}/api/health",
                                    lineage_url=f"{URL_PREFIX}/api/lineage"))


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
        # Reports carry upstream values and their own scripts: they run sandboxed, in an origin of their own,
        # never with the viewer's Airflow session.
        return Response(lake.read_bytes(key), media_type=media_type, headers=REPORT_HEADERS)
    keys = lake.list(key)
    if not keys:
        raise HTTPException(status_code=404, detail=f"no report at {lake.uri(key)}")
    return HTMLResponse(_listing(key, keys))


@app.get("/api/lineage", dependencies=[Depends(get_user)])
def lineage_json(ds: Annotated[dt.date, Query(description="flight date whose predictions to trace")]) -> JSONResponse:
    """The lineage of a day's predictions (jobs.lineage): model version, training set, features, raw, landing."""
    from jobs.lineage import NoLineage, lineage
    from jobs.registry import MlflowUnreachable

    from mlflow.exceptions import MlflowException

    try:
        return JSONResponse(lineage(_lake(), ds.isoformat(), settings=_settings()))
    except NoLineage as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except MlflowUnreachable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    except MlflowException as exc:  # the version that scored the day is gone from the registry
        raise HTTPException(status_code=404, detail=f"lineage of {ds}: {exc.message[:300]}") from None


NonEmpty = Annotated[str, Query(min_length=1, max_length=250)]


# Reading a task's result needs the right to read that DAG's XComs (the dag_id of the query).
@app.get("/artifact/{kind}", dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.XCOM))])
def artifact(kind: str, session: SessionDep, dag_id: NonEmpty, run_id: NonEmpty, task_id: NonEmpty,
             map_index: int = -1) -> Response:
    """Redirect to what one task instance made (its extra link's target), read from its result."""
    from airflow.models.xcom import XComModel
    from jobs.health import mlflow_links

    if kind not in BY_KIND:
        raise HTTPException(status_code=404, detail=f"unknown artifact {kind!r}: one of {sorted(BY_KIND)}")
    row = session.scalars(XComModel.get_many(run_id=run_id, key="return_value", task_ids=task_id, dag_ids=dag_id,
                                             map_indexes=map_index)).first()
    results = XComModel.deserialize_value(row) if row is not None else None
    settings = _settings()

    def experiment_of(mlflow_run_id: str) -> str | None:
        from mlflow.exceptions import MlflowException

        from jobs.registry import MlflowUnreachable, client

        try:
            return client(settings.mlflow.tracking_uri).get_run(mlflow_run_id).info.experiment_id
        except MlflowUnreachable as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        except MlflowException:
            raise MissingArtifact(f"MLflow has no run {mlflow_run_id} (deleted?)") from None

    try:
        target = artifact_url(kind, results, mlflow_links=mlflow_links(settings), experiment_of=experiment_of)
    except MissingArtifact as exc:
        if kind == "data-docs" and results is None and task_id.endswith(".validate_and_publish"):
            # A rejected delivery has no result, but its Data Docs were written: the feed's reports by date.
            return RedirectResponse(f"{URL_PREFIX}/reports/validation/{task_id.split('.', 1)[0]}/", status_code=307)
        raise HTTPException(status_code=404, detail=f"{dag_id} / {run_id} / {task_id}: {exc}") from None
    return RedirectResponse(target, status_code=307)


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
    global_operator_extra_links = LINKS
