"""Links from a task in the Airflow UI to what that task made: its Data Docs, model version, MLflow run,
model card, drift report or backtest report.

Each link is an operator extra link registered globally by the plugin (DAG code never imports plugins).
Its URL is a route of the plugin, `/pipeline/artifact/{kind}?dag_id=..&run_id=..&task_id=..`, that
reads the task's result (the step's STEP_RESULT, its XCom `return_value`) when clicked and redirects to
the artifact of that very run: the model card of the version it trained, the drift report of the date
it monitored. A task that has no result yet (running, failed, skipped) answers 404 saying so.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

URL_PREFIX = "/pipeline"


@dataclass(frozen=True)
class Artifact:
    kind: str  # the route's {kind}
    title: str  # the button's text in the UI
    made_by: Callable[[str, str], bool]  # (dag_id, task_id) -> does this task make it?


ARTIFACTS = (
    Artifact("data-docs", "Data Docs", lambda dag, task: task.endswith(".validate_and_publish")),
    Artifact("model-version", "Model version", lambda dag, task: task == "train"),
    Artifact("model-card", "Model card", lambda dag, task: task == "evaluate_and_gate"),
    Artifact("mlflow-run", "MLflow run", lambda dag, task: task in ("train", "evaluate_and_gate")
             or (dag == "delay_model_monitoring" and task == "monitor")),
    Artifact("drift-report", "Drift report", lambda dag, task: dag == "delay_model_monitoring" and task == "monitor"),
    Artifact("backtest-report", "Backtest report", lambda dag, task: dag == "delay_model_backtest" and task == "backtest"),
)
BY_KIND = {artifact.kind: artifact for artifact in ARTIFACTS}


class MissingArtifact(LookupError):
    """The task's result does not name the artifact (yet): the message says what is missing."""


def _report_url(key: str) -> str:
    return f"{URL_PREFIX}/reports/{key.removeprefix('reports/')}"


def artifact_url(kind: str, results: Any, *, mlflow_links: Any, experiment_of: Callable[[str], str | None]) -> str:
    """Where the artifact `kind` of a task whose result is `results` lives (a plugin path or an MLflow page)."""
    from jobs.lake import report_key

    if not results:
        raise MissingArtifact("the task has no result: it has not finished, failed before its step reported, "
                              "or skipped")
    result = results[0] if isinstance(results, list) else results
    if not isinstance(result, dict):
        raise MissingArtifact("the task's result is not a step result")

    def need(field: str) -> Any:
        if not result.get(field):
            raise MissingArtifact(f"the task's result has no {field!r}")
        return result[field]

    if kind == "data-docs":
        if not result.get("report_uri"):
            raise MissingArtifact("no Data Docs for this delivery: it was rejected before validation could run")
        return _report_url(report_key("validation", need("feed"), f"date={need('ds')}", "index.html"))
    if kind in ("model-card", "drift-report", "backtest-report"):
        field = "model_card_key" if kind == "model-card" else "report_key"
        return _report_url(need(field))
    if kind == "model-version":
        url = mlflow_links.version(str(need("model_version")))
    elif kind == "mlflow-run":
        run_id = result.get("mlflow_run_id") or need("run_id")
        url = mlflow_links.run(experiment_of(run_id), run_id)
    else:
        raise MissingArtifact(f"unknown artifact {kind!r}: one of {sorted(BY_KIND)}")
    if url is None:
        raise MissingArtifact("MLflow's UI has no web address here (set mlflow.ui_url in the settings)")
    return url


class ArtifactLink(BaseOperatorLink):
    """One artifact's button on the tasks that make it (empty, so hidden, on every other task)."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.artifact.title

    def get_link(self, operator, *, ti_key) -> str:
        dag_id = getattr(ti_key, "dag_id", "")
        if not self.artifact.made_by(dag_id, ti_key.task_id):
            return ""
        query = {"dag_id": dag_id, "run_id": ti_key.run_id, "task_id": ti_key.task_id,
                 "map_index": getattr(ti_key, "map_index", -1)}
        return f"{URL_PREFIX}/artifact/{self.artifact.kind}?{urlencode(query)}"


LINKS = [ArtifactLink(artifact) for artifact in ARTIFACTS]
