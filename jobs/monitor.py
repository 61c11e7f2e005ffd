"""Monitor the serving model for flight date D: drift, served performance, and whether to retrain.

    python -m jobs.monitor --ds 2013-03-01 [--active-trainings N | --training-active]

The run for D (DESIGN.md: it runs at the start of D, when the outcomes of D-1 have just landed):
1. **Data drift** of D's features against the champion's training reference (a sample of its
   training set stored with the model at training time: jobs/drift.py), on the model's input
   columns, both sides sampled to `monitoring.max_rows_per_side` (stratified by
   `monitoring.stratify_by`, sizes recorded).
2. **Prediction drift** of D's served probabilities against the model's own probabilities
   on that reference. No predictions partition: the section says `missing`, naming it.
3. **Served performance** of the predictions that were served for the days of the window
   `D - label_lag_days - performance_window_days + 1 .. D - label_lag_days` whose outcomes
   have arrived: ROC AUC, precision and recall at the policy threshold, calibration (ECE),
   pooled over the window and for the latest labelled day. Days without outcomes yet are
   listed as `pending`, never counted as zero; cancelled flights (no arrival) are counted apart.
4. **The retraining decision** (jobs/retrain.py, policy `retraining:`): this day's drift and
   the verdicts of the days before it (their reports, same champion version), the window's
   served AUC, what the registry says about training (the champion's data end, the newest
   candidate and whether it was promoted), and whether a training is
   active (`--active-trainings N`, counted by the DAG as the task starts, or `--training-active`). A `retrain` decision carries the `conf` for
   `delay_model_training`: the reason, the evidence and the windows (holdout: the last
   `training.holdout_days` labelled days; training: everything before).

Everything goes to `reports/drift/{ds}/` (Evidently's `data_drift.html|json`,
`prediction_drift.html|json`, and `summary.json` with the decision) and the summary metrics to
the MLflow experiment `monitoring.experiment`: one run per champion version, one point per
flight date (step = days since the first flight date), so the trend plots in MLflow's UI.

Exit codes: 0 monitored (whatever the decision); 4 nothing to monitor, named (no champion,
no features partition for D); 3 the champion has no drift reference (names the version:
retrain or promote a version trained since the reference was added); 1 anything else.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobs.cli import step_parser
from jobs.feeds import DELAYED_MINUTES, FLIGHT_KEY, LABEL
from jobs.lake import Lake, PartitionNotFound, raw_key, report_key
from jobs.results import EXIT_OK, EXIT_REJECTED, EXIT_SKIPPED, SKIP_PREFIX, emit_result, record_rejection

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from jobs.serving import ServingModel
    from jobs.settings import Settings

log = logging.getLogger("jobs.monitor")



class NothingToMonitor(RuntimeError):
    """No champion or no features for the date: a skip with its reason."""


class ReferenceMissing(RuntimeError):
    """The champion has no drift reference."""


def drift_report_key(ds: str, name: str = "") -> str:
    return report_key("drift", ds, name) if name else report_key("drift", ds)


def last_monitored_date(lake: Lake) -> dt.date | None:
    """The latest flight date whose monitoring finished (its `summary.json`, written last)."""
    prefix = report_key("drift") + "/"
    days = {key[len(prefix):].split("/", 1)[0] for key in lake.list(prefix) if key.endswith("/summary.json")}
    return max((dt.date.fromisoformat(day) for day in days), default=None)


def load_reference(model: "ServingModel") -> "pd.DataFrame":
    import mlflow
    import pandas as pd

    from jobs.drift import REFERENCE_ARTIFACT

    try:
        path = mlflow.artifacts.download_artifacts(run_id=model.run_id, artifact_path=REFERENCE_ARTIFACT)
    except Exception as exc:  # noqa: BLE001 - MLflow raises several kinds for a missing artifact
        raise ReferenceMissing(f"{model.name} version {model.version} (run {model.run_id}) has no drift reference "
                               f"{REFERENCE_ARTIFACT}: it was trained before references were stored, or the artifact "
                               f"is gone. Train a new version (delay_model_training) to monitor it. "
                               f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    return pd.read_parquet(path)


def column_kinds(reference: "pd.DataFrame", watched: "Sequence[str] | None" = None) -> tuple[list[str], list[str]]:
    """(numerical, categorical) model inputs of a reference, by the feature schema's roles; only the
    `watched` ones (settings `monitoring.drift_columns`) when given."""
    from jobs.drift import REFERENCE_EXTRA
    from jobs.features import load_feature_schema

    roles = {column.name: column.role for column in load_feature_schema().columns}
    inputs = [c for c in reference.columns if c not in REFERENCE_EXTRA and (watched is None or c in watched)]
    categorical = [c for c in inputs if roles.get(c) == "categorical" or reference[c].dtype == bool]
    numerical = [c for c in inputs if c not in categorical]
    return numerical, categorical


def _labelled(lake: Lake, ds: str) -> tuple["pd.DataFrame | None", str]:
    """Served predictions of `ds` joined to their outcomes, or (None, status)."""
    import numpy as np

    from jobs.score import predictions_key

    try:
        predictions = lake.read_partition(predictions_key(ds))
    except PartitionNotFound:
        return None, "no predictions"
    try:
        outcomes = lake.read_table(raw_key("flights", ds), [*FLIGHT_KEY, "arr_delay"])[0].to_pandas()
    except PartitionNotFound:
        return None, "pending"
    joined = predictions.merge(outcomes, on=list(FLIGHT_KEY), how="inner")
    joined["cancelled"] = joined["arr_delay"].isna()
    joined[LABEL] = np.where(joined["cancelled"], 0, (joined["arr_delay"] >= DELAYED_MINUTES).astype(int))
    return joined, "labelled"


def served_performance(lake: Lake, ds: dt.date, settings: "Settings") -> dict[str, Any]:
    """Served performance over the labelled days of the window (module docstring, step 3)."""
    import pandas as pd

    from jobs.evaluate import holdout_metrics, scalar_metrics

    config = settings.monitoring
    last = ds - dt.timedelta(days=config.label_lag_days)
    days = [last - dt.timedelta(days=back) for back in range(config.performance_window_days - 1, -1, -1)]
    days = [d for d in days if settings.data.covers(d)]
    status, frames = {}, []
    for day in days:
        frame, state = _labelled(lake, day.isoformat())
        status[day.isoformat()] = state
        if frame is not None:
            frames.append(frame)
    out: dict[str, Any] = {"window": [days[0].isoformat(), days[-1].isoformat()] if days else None, "days": status,
                           "threshold": settings.training.decision_threshold}
    if not frames:
        out.update(status="pending", labelled_rows=0, message="no served predictions with outcomes in the window yet")
        return out
    served = pd.concat(frames, ignore_index=True)
    cancelled = int(served["cancelled"].sum())
    served = served[~served["cancelled"]]
    threshold = settings.training.decision_threshold
    window = holdout_metrics(served[LABEL], served["probability"], served, threshold=threshold)
    latest_day = max(d for d, s in status.items() if s == "labelled")
    latest = served[served["flight_date"].astype(str) == latest_day]
    out.update(status="measured", labelled_rows=int(len(served)), cancelled=cancelled,
               model_versions=sorted(served["model_version"].astype(str).unique().tolist()),
               metrics=scalar_metrics(window), calibration=window["calibration"], slices=window["slices"],
               latest_day={"ds": latest_day, "rows": int(len(latest)),
                           **(scalar_metrics(holdout_metrics(latest[LABEL], latest["probability"],
                                                             threshold=threshold)) if len(latest) else {})})
    return out


def previous_verdicts(lake: Lake, ds: dt.date, days: int, model_version: str) -> list[bool | None]:
    """Dataset-drift verdicts of the `days` dates before `ds` (nearest first) for the same champion version."""
    verdicts = []
    for back in range(1, days + 1):
        key = drift_report_key((ds - dt.timedelta(days=back)).isoformat(), "summary.json")
        try:
            summary = lake.read_json(key) if lake.exists(key) else None
        except (OSError, ValueError):
            summary = None
        if not summary or summary.get("model", {}).get("version") != model_version:
            verdicts.append(None)
        else:
            verdicts.append(summary.get("data_drift", {}).get("dataset_drift"))
    return verdicts


def retrain_conf(ds: dt.date, decision: Any, evidence: Any, settings: "Settings") -> dict[str, Any]:
    """delay_model_training's conf: the reason, the evidence and the windows (up to the last labelled day)."""
    holdout_end = ds - dt.timedelta(days=settings.monitoring.label_lag_days)
    holdout_start = holdout_end - dt.timedelta(days=settings.training.holdout_days - 1)
    return {"reason": f"delay_model_monitoring {ds}: {decision.summary}"[:2000],
            "evidence": {**evidence.to_json(), "reasons": list(decision.reasons)},
            "train_start": settings.data.first_flight_date.isoformat(),
            "train_end": (holdout_start - dt.timedelta(days=1)).isoformat(),
            "holdout_start": holdout_start.isoformat(), "holdout_end": holdout_end.isoformat()}


def _write_snapshot(lake: Lake, ds: str, name: str, snapshot: Any) -> dict[str, str]:
    html = lake.write_text(drift_report_key(ds, f"{name}.html"), snapshot.get_html_str(as_iframe=False))
    lake.write_text(drift_report_key(ds, f"{name}.json"), snapshot.json())
    return {"html": html, "html_key": drift_report_key(ds, f"{name}.html")}


def _log_to_mlflow(settings: "Settings", model: "ServingModel", ds: dt.date, summary: dict[str, Any],
                   mlflow_client: "MlflowClient") -> str:
    """One point per flight date in the champion version's monitoring run; returns the run id."""
    import mlflow

    experiment = mlflow.set_experiment(settings.monitoring.experiment)
    found = mlflow_client.search_runs([experiment.experiment_id],
                                      filter_string=f"tags.model_version = '{model.version}' and "
                                                    f"tags.model_name = '{model.name}'", max_results=1)
    step = (ds - settings.data.first_flight_date).days
    data, prediction, performance = summary["data_drift"], summary["prediction_drift"], summary["performance"]
    metrics = {"data_drift_share": data["drift_share"], "dataset_drift": float(data["dataset_drift"]),
               "drifted_columns": float(len(data["drifted_columns"])),
               "retrain_decision": float(summary["decision"]["retrain"])}
    if prediction.get("status") == "measured":
        metrics.update(prediction_drift_score=prediction["score"], mean_probability=prediction["current_mean"])
    if performance.get("status") == "measured":
        metrics.update({f"served_{k}": v for k, v in performance["metrics"].items()})
        metrics["served_labelled_rows"] = float(performance["labelled_rows"])
    timestamp = int(dt.datetime.combine(ds, dt.time(), tzinfo=dt.timezone.utc).timestamp() * 1000)
    run_kwargs = ({"run_id": found[0].info.run_id} if found else
                  {"run_name": f"monitor-{model.name}-v{model.version}",
                   "tags": {"model_name": model.name, "model_version": model.version, "model_run_id": model.run_id}})
    with mlflow.start_run(**run_kwargs) as run:
        mlflow_client.log_batch(run.info.run_id, metrics=[
            mlflow.entities.Metric(key, float(value), timestamp, step) for key, value in metrics.items()])
        mlflow.set_tags({"last_ds": ds.isoformat(), "last_decision": summary["decision"]["summary"][:5000]})
        mlflow.log_dict(summary, f"drift/{ds.isoformat()}/summary.json")
    return run.info.run_id


def monitor_date(lake: Lake, ds: dt.date, *, settings: "Settings | None" = None,
                 mlflow_client: "MlflowClient | None" = None, training_active: bool = False) -> dict[str, Any]:
    """Steps 1-4 of the module docstring for flight date `ds`; returns the summary written to the report."""
    import mlflow

    from jobs.drift import PROBABILITY, data_drift, prediction_drift, stratified_sample
    from jobs.features import features_key
    from jobs.registry import client, training_history
    from jobs.retrain import RetrainEvidence, decide_retraining
    from jobs.score import predictions_key
    from jobs.serving import NothingToScore, resolve_champion
    from jobs.settings import get_settings

    settings = settings or get_settings()
    config = settings.monitoring
    mlflow_client = mlflow_client or client(settings.mlflow.tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    day = ds.isoformat()
    try:
        model = resolve_champion(mlflow_client, settings.mlflow.model_name, settings.training.decision_threshold)
    except NothingToScore as exc:
        raise NothingToMonitor(str(exc)) from exc
    try:
        features = lake.read_partition(features_key(day))
    except PartitionNotFound:
        raise NothingToMonitor(f"no features partition {lake.uri(features_key(day))}: nothing to check for {day} "
                               "(flights_features has not built it)") from None
    reference = load_reference(model)
    log.info("champion %s (run %s); reference %d rows; features of %s: %d rows", model.uri, model.run_id,
             len(reference), day, len(features))

    # 1. Data drift, both sides bounded.
    numerical, categorical = column_kinds(reference, config.drift_columns)
    by, seed = config.stratify_by, config.sample_seed
    reference_side, reference_info = stratified_sample(reference, config.max_rows_per_side, by, seed)
    current_side, current_info = stratified_sample(features, config.max_rows_per_side, by, seed)
    data = data_drift(reference_side, current_side, numerical, categorical, config.drift_share,
                      numerical_threshold=config.numerical_threshold,
                      categorical_threshold=config.categorical_threshold)
    data.summary.update(reference_sample=reference_info, current_sample=current_info)
    data.summary.update(_write_snapshot(lake, day, "data_drift", data.snapshot))
    log.info("data drift %s: %d of %d columns drifted (share %.2f, policy %.2f): %s", day,
             len(data.summary["drifted_columns"]), len(data.summary["columns"]), data.summary["drift_share"],
             config.drift_share, ", ".join(data.summary["drifted_columns"][:8]) or "none")

    # 2. Prediction drift.
    try:
        served = lake.read_partition(predictions_key(day))
    except PartitionNotFound:
        served = None
    if served is None or served.empty:
        prediction = {"status": "missing",
                      "message": f"no predictions partition {lake.uri(predictions_key(day))} (scoring has not run)"}
        log.warning("prediction drift %s: %s", day, prediction["message"])
    else:
        sample, info = stratified_sample(served, config.max_rows_per_side, by, seed)
        result = prediction_drift(reference_side[PROBABILITY], sample[PROBABILITY], config.numerical_threshold)
        prediction = {"status": "measured", **result.summary, "current_sample": info,
                      "served_by_versions": sorted(served["model_version"].astype(str).unique().tolist()),
                      **_write_snapshot(lake, day, "prediction_drift", result.snapshot)}
        log.info("prediction drift %s: %s %.4f (threshold %.2f), mean probability %.3f vs reference %.3f", day,
                 result.summary["method"], result.summary["score"] or 0.0, result.summary["threshold"],
                 result.summary["current_mean"], result.summary["reference_mean"])

    # 3. Served performance.
    performance = served_performance(lake, ds, settings)
    if performance["status"] == "measured":
        log.info("served performance %s..%s: ROC AUC %.3f on %d labelled flights (%d cancelled), days %s",
                 *performance["window"], performance["metrics"].get("roc_auc", float("nan")),
                 performance["labelled_rows"], performance["cancelled"], performance["days"])
    else:
        log.info("served performance: pending (%s)", performance["days"])

    # 4. The decision.
    policy = settings.retraining
    evidence = RetrainEvidence(
        ds=ds, dataset_drift=data.summary["dataset_drift"], drift_share=data.summary["drift_share"],
        previous_drift=previous_verdicts(lake, ds, max(policy.drift_days - 1, 0), model.version),
        served_auc=performance.get("metrics", {}).get("roc_auc"), labelled_rows=performance["labelled_rows"],
        history=training_history(mlflow_client, model.name), training_active=training_active,
        drifted_columns=tuple(data.summary["drifted_columns"]))
    decision = decide_retraining(evidence, policy)
    (log.warning if decision.retrain else log.info)("decision %s: %s", day, decision.summary)

    summary = {
        "ds": day, "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": model.name, "version": model.version, "run_id": model.run_id},
        "data_drift": {k: v for k, v in data.summary.items()}, "prediction_drift": prediction,
        "performance": performance, "policy": policy.model_dump(), "evidence": evidence.to_json(),
        "decision": decision.to_json(),
        "retrain_conf": retrain_conf(ds, decision, evidence, settings) if decision.retrain else None,
    }
    summary["mlflow_run_id"] = _log_to_mlflow(settings, model, ds, summary, mlflow_client)
    lake.write_json(drift_report_key(day, "summary.json"), summary)
    return summary


def result_line(summary: dict[str, Any], lake: Lake) -> dict[str, Any]:
    """The small STEP_RESULT of a monitoring run: references and the decision, never data."""
    performance = summary["performance"]
    return {"ds": summary["ds"], "model_version": summary["model"]["version"],
            "dataset_drift": summary["data_drift"]["dataset_drift"],
            "drift_share": summary["data_drift"]["drift_share"],
            "drifted_columns": summary["data_drift"]["drifted_columns"][:10],
            "prediction_drift": summary["prediction_drift"].get("score"),
            "served_auc": performance.get("metrics", {}).get("roc_auc"), "performance_status": performance["status"],
            "retrain": summary["decision"]["retrain"], "decision": summary["decision"]["summary"],
            "retrain_conf": summary["retrain_conf"],
            "report_uri": lake.uri(drift_report_key(summary["ds"], "data_drift.html")),
            "report_key": drift_report_key(summary["ds"], "data_drift.html"),
            "mlflow_run_id": summary["mlflow_run_id"]}


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a count of runs (a whole number >= 0)")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    from jobs.registry import MlflowUnreachable

    parser = step_parser("jobs.monitor", __doc__.split("\n\n")[0], "--ds 2013-03-01")
    parser.add_argument("--ds", required=True, type=dt.date.fromisoformat, help="flight date, YYYY-MM-DD")
    active = parser.add_mutually_exclusive_group()
    active.add_argument("--training-active", action="store_true",
                        help="a delay_model_training run is queued or running (no new trigger)")
    active.add_argument("--active-trainings", type=_count, default=0, metavar="N",
                        help="how many delay_model_training runs are queued or running (the DAG counts them)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.active_trainings:
        log.info("delay_model_training: %d run(s) queued or running", args.active_trainings)
    lake = Lake.from_settings()
    try:
        summary = monitor_date(lake, args.ds, training_active=args.training_active or args.active_trainings > 0)
    except NothingToMonitor as exc:
        print(f"{SKIP_PREFIX}{exc}", flush=True)
        record_rejection(str(exc))
        return EXIT_SKIPPED
    except ReferenceMissing as exc:
        print(f"ERROR jobs.monitor rejected: {exc}", file=sys.stderr)
        record_rejection(str(exc))
        return EXIT_REJECTED
    except MlflowUnreachable as exc:
        print(f"ERROR jobs.monitor: {exc}", file=sys.stderr)
        return 1
    emit_result(json.loads(json.dumps(result_line(summary, lake), default=str)))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
