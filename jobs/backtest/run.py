"""One backtest, steps 1-4 of jobs.backtest: plan, model, scoring, comparison, outputs."""
from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from jobs.backtest.compare import compare, read_labels, read_served
from jobs.backtest.report import render_chart, render_html
from jobs.backtest.request import (DEFAULT_ALIAS, BacktestRejected, BacktestRequest, backtest_key,
                                   backtest_predictions_key, check_request)
from jobs.backtest.training import trained_model
from jobs.lake import Lake
from jobs.reports import num

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from pyspark.sql import SparkSession

    from jobs.settings import Settings

log = logging.getLogger("jobs.backtest")


def run_backtest(lake: Lake, request: "BacktestRequest | dict[str, Any]", settings: "Settings | None" = None, *,
                 spark: "SparkSession | None" = None, mlflow_client: "MlflowClient | None" = None) -> dict[str, Any]:
    """Steps 1-4 of the module docstring; returns the summary written to `backtest.json`."""
    import mlflow
    import pandas as pd

    from jobs.features import load_feature_schema
    from jobs.registry import client
    from jobs.score import score_with_model
    from jobs.serving import ChampionUnusable
    from jobs.settings import get_settings
    from jobs.spark import step_session

    if isinstance(request, dict):
        request = BacktestRequest.from_json(request)
    settings = settings or get_settings()
    mlflow_client = mlflow_client or client(settings.mlflow.tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    plan = check_request(lake, request, settings, mlflow_client)
    training = None
    if plan.model is None:
        plan.model, training = trained_model(lake, request, plan, settings, mlflow_client)
    model = plan.model
    log.info("backtest %s: %s version %s over %s..%s (%d day(s) with features and outcomes)", plan.backtest_id,
             model.name, model.version, plan.start, plan.end, len(plan.days))
    for ds, why in plan.left_out.items():
        log.warning("%s left out: %s", ds, why)

    key = list(load_feature_schema(settings.features.schema_path).key)
    with step_session("backtest", settings.spark, spark, python_workers=True) as spark:
        try:
            scored = score_with_model(lake, model, plan.days, settings=settings, spark=spark,
                                      key_of=lambda ds: backtest_predictions_key(plan.backtest_id, ds))
        except ChampionUnusable as exc:
            raise BacktestRejected(f"{model.name} version {model.version} (run {model.run_id}) cannot be loaded: "
                                   f"{exc.__cause__ or exc}") from exc
    labels = read_labels(lake, plan.days, key)
    backtest = pd.concat([lake.read_partition(backtest_predictions_key(plan.backtest_id, r.ds)) for r in scored],
                         ignore_index=True)
    served, served_days = read_served(lake, plan.days, key)
    per_day, totals = compare(backtest, labels, served, key, served_days, model.threshold)

    tags = mlflow_client.get_run(model.run_id).data.tags if model.run_id else {}
    summary = {
        "id": plan.backtest_id, "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "request": request.to_json(),
        "model": {"name": model.name, "version": model.version, "run_id": model.run_id, "uri": model.uri,
                  "source": ("trained" if training else f"version {request.version}" if request.version
                             else f"alias {request.alias or DEFAULT_ALIAS}"),
                  "family": tags.get("family"),
                  "training_window": {k.removeprefix("window."): v for k, v in tags.items() if k.startswith("window.")}},
        "training": training, "window": {"start": plan.start.isoformat(), "end": plan.end.isoformat()},
        "threshold": model.threshold, "days": per_day, "totals": totals, "left_out": plan.left_out,
        "warnings": plan.warnings,
        "outputs": {name: lake.uri(backtest_key(plan.backtest_id, name))
                    for name in ("backtest.json", "backtest.html", "backtest.png")},
        "predictions_prefix": lake.uri(backtest_key(plan.backtest_id, "predictions")),
    }
    lake.write_bytes(backtest_key(plan.backtest_id, "backtest.png"), render_chart(summary))
    lake.write_text(backtest_key(plan.backtest_id, "backtest.html"), render_html(summary))
    lake.write_json(backtest_key(plan.backtest_id, "backtest.json"), summary)
    log.info("backtest %s: ROC AUC %s backtested vs %s served over %d flights -> %s", plan.backtest_id,
             num(totals["backtest"] and totals["backtest"]["roc_auc"], 4),
             num(totals["served"] and totals["served"]["roc_auc"], 4), totals["rows"],
             summary["outputs"]["backtest.html"])
    return summary


def result_line(summary: dict[str, Any]) -> dict[str, Any]:
    """The small STEP_RESULT of a backtest: references and headline numbers, never data."""
    totals = summary["totals"]
    return {"backtest_id": summary["id"], "model_version": summary["model"]["version"],
            "model_run_id": summary["model"]["run_id"], "trained": summary["training"] is not None,
            "window": [summary["window"]["start"], summary["window"]["end"]], "days": totals["days"],
            "rows": totals["rows"], "cancelled": totals["cancelled"],
            "backtest_roc_auc": (totals["backtest"] or {}).get("roc_auc"),
            "served_roc_auc": (totals["served"] or {}).get("roc_auc"),
            "json_uri": summary["outputs"]["backtest.json"], "report_uri": summary["outputs"]["backtest.html"],
            "report_key": backtest_key(summary["id"], "backtest.html"), "warnings": summary["warnings"]}

