"""Holdout metrics of a model's probabilities: what the gate, the model card and MLflow show.

    metrics = holdout_metrics(y_true, probability, holdout_frame)
    metrics["roc_auc"], metrics["slices"]["carrier"]["UA"], metrics["calibration"]

Pure functions on arrays (scikit-learn's metric implementations):
- `roc_auc`, `pr_auc` (average precision), `log_loss`, `brier`, `positive_rate`, `rows`;
- `calibration`: `bins` equal-width probability bins, each with its rows, mean predicted
  probability and observed delay rate, plus the expected calibration error (`ece`,
  the row-weighted mean gap);
- `slices`: ROC AUC and rows per carrier and per origin (`auc` is None where a slice
  holds one class only: AUC is undefined there, and the gate does not judge it);
- `precision`, `recall` at a decision threshold, for serving reports.
The output is JSON-ready and is what `jobs.gate.ModelMetrics.from_json` reads.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobs.cli import model_version, step_parser

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger("jobs.evaluate")

SLICE_COLUMNS = ("carrier", "origin")


def _auc(y: "np.ndarray", p: "np.ndarray") -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else None


def calibration(y: "np.ndarray", p: "np.ndarray", bins: int = 10) -> dict[str, Any]:
    import numpy as np

    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table, gap = [], 0.0
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if n == 0:
            continue
        predicted, observed = float(p[mask].mean()), float(y[mask].mean())
        gap += n * abs(predicted - observed)
        table.append({"bin": [round(float(edges[b]), 3), round(float(edges[b + 1]), 3)], "rows": n,
                      "mean_predicted": round(predicted, 6), "observed_rate": round(observed, 6)})
    return {"bins": table, "ece": round(gap / max(len(y), 1), 6)}


def holdout_metrics(y_true: Any, probability: Any, frame: "pd.DataFrame | None" = None, *,
                    slice_columns: Sequence[str] = SLICE_COLUMNS, threshold: float = 0.5,
                    bins: int = 10) -> dict[str, Any]:
    """Every metric of one model on one holdout; `frame` (same rows) gives the slices."""
    import numpy as np
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss

    y = np.asarray(y_true, dtype=int)
    p = np.clip(np.asarray(probability, dtype=float), 1e-7, 1 - 1e-7)
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} probabilities")
    if len(y) == 0:
        raise ValueError("no holdout rows to evaluate")
    predicted = p >= threshold
    true_positive = int((predicted & (y == 1)).sum())
    metrics: dict[str, Any] = {
        "rows": int(len(y)),
        "positive_rate": float(y.mean()),
        "roc_auc": _auc(y, p),
        "pr_auc": float(average_precision_score(y, p)) if y.any() else None,
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "threshold": threshold,
        "precision": true_positive / int(predicted.sum()) if predicted.any() else None,
        "recall": true_positive / int(y.sum()) if y.any() else None,
        "calibration": calibration(y, p, bins),
        "slices": {},
    }
    if frame is not None:
        if len(frame) != len(y):
            raise ValueError(f"{len(frame)} holdout rows but {len(y)} labels")
        for column in slice_columns:
            groups = {}
            values = frame[column].astype("string").fillna("(missing)").to_numpy()
            for key in sorted(set(values.tolist())):
                mask = values == key
                groups[key] = {"auc": _auc(y[mask], p[mask]), "rows": int(mask.sum())}
            metrics["slices"][column] = groups
    return metrics


def scalar_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of `holdout_metrics` that MLflow logs as metrics (the rest goes to artifacts)."""
    names = ("roc_auc", "pr_auc", "log_loss", "brier", "positive_rate", "precision", "recall")
    out = {f"{prefix}{name}": float(metrics[name]) for name in names if metrics.get(name) is not None}
    out[f"{prefix}calibration_ece"] = float(metrics["calibration"]["ece"])
    return out


# The evaluate-and-gate step --------------------------------------------------------------
# python -m jobs.evaluate --version N: the candidate version (registered by jobs.train), its
# HGB baseline and the current champion scored on the candidate's holdout; the gate decides;
# the decision and every reason go to MLflow (run metrics and tags, version tags) and to a
# model card (JSON + HTML) in the lake (reports/training/{model}/version={N}/) and as an
# artifact of the run. Exit 0 whatever the decision (a rejection is a result, not a failure:
# the DAG branches on it); 1 when MLflow or an input cannot be read (retried).

def model_card_key(model: str, version: str) -> str:
    return f"reports/training/{model}/version={version}"


def _predict(model_uri: str, frame: "pd.DataFrame"):
    """Probabilities of a logged model for the rows of `frame` (only the columns its signature names)."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    columns = model.metadata.get_input_schema().input_names()
    return model.predict(frame[columns]).to_numpy()


def render_card_html(card: dict[str, Any]) -> str:
    """A self-contained HTML page of the model card (what the plugin and the lake serve)."""
    from jobs.reports import render_page

    return render_page("model_card.html.j2", card=card, generated_at=card["generated_at"])


def evaluate_version(version: str, *, settings: "Any | None" = None, lake: "Any | None" = None) -> dict[str, Any]:
    import datetime as dt

    import mlflow

    from jobs.gate import ModelMetrics, decide
    from jobs.lake import Lake
    from jobs.model.leakage import single_feature_aucs
    from jobs.model.preprocessing import FeatureSpec
    from jobs.registry import CHAMPION, alias_version, client
    from jobs.settings import get_settings
    from jobs.feeds import LABEL
    from jobs.training_set import read_training_set, training_set_key

    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    mlflow_client = client(settings.mlflow.tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    name, threshold = settings.mlflow.model_name, settings.training.decision_threshold
    candidate_version = mlflow_client.get_model_version(name, version)
    run = mlflow_client.get_run(candidate_version.run_id)
    set_id, baseline_run_id = run.data.tags["training_set"], run.data.tags["baseline_run_id"]
    holdout = read_training_set(lake, set_id, "holdout")
    train = read_training_set(lake, set_id, "train")
    y = holdout[LABEL].to_numpy()
    holdout_meta = lake.read_manifest(training_set_key(set_id, "holdout"))["metadata"]["windows"]

    scored = {"candidate": {"version": version, "run_id": candidate_version.run_id,
                            "uri": f"models:/{name}/{version}"},
              "baseline": {"run_id": baseline_run_id, "uri": f"runs:/{baseline_run_id}/model"}}
    champion_version = alias_version(mlflow_client, name, CHAMPION)
    champion_problem = None
    if champion_version is not None and champion_version != version:
        scored["champion"] = {"version": champion_version, "uri": f"models:/{name}/{champion_version}"}
    for role, entry in scored.items():
        try:
            entry["metrics"] = holdout_metrics(y, _predict(entry["uri"], holdout), holdout, threshold=threshold)
        except Exception as exc:  # noqa: BLE001 - a champion that cannot be scored is reported, not fatal
            if role != "champion":
                raise
            champion_problem = (f"champion version {champion_version} could not be scored "
                                f"({type(exc).__name__}: {str(exc)[:200]})")
            log.warning(champion_problem)
            entry["error"] = champion_problem
    features = FeatureSpec.from_schema(exclude=settings.training.exclude_features)
    single = single_feature_aucs(train, train[LABEL], holdout, y, features)
    champion = scored.get("champion", {}).get("metrics")
    decision = decide(ModelMetrics.from_json(scored["candidate"]["metrics"]),
                      ModelMetrics.from_json(champion) if champion else None,
                      ModelMetrics.from_json(scored["baseline"]["metrics"]), single, settings.gate,
                      champion_problem=champion_problem)
    card = {
        "model": name, "version": version, "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "training_set": set_id, "reason": run.data.tags.get("reason", ""),
        "holdout": {"start": holdout_meta["holdout_start"], "end": holdout_meta["holdout_end"], "rows": len(y)},
        "policy": settings.gate.model_dump(), "decision": decision.to_json(),
        "single_feature_auc": dict(sorted(single.items(), key=lambda kv: -kv[1])),
        "models": {role: {k: v for k, v in entry.items() if k != "uri"} for role, entry in scored.items()},
    }
    key = model_card_key(name, version)
    # The page first, the JSON last: readers (the model-health view) take the JSON as the card's presence
    # and link the page, so a step killed between the two puts leaves no card that links nowhere.
    lake.write_text(f"{key}/model_card.html", render_card_html(card))
    lake.write_json(f"{key}/model_card.json", card)
    with mlflow.start_run(run_id=candidate_version.run_id):
        mlflow.log_metrics(scalar_metrics(scored["candidate"]["metrics"], "holdout_"))
        mlflow.log_metrics(scalar_metrics(scored["baseline"]["metrics"], "baseline_holdout_"))
        if champion:
            mlflow.log_metrics(scalar_metrics(champion, "champion_holdout_"))
        mlflow.log_dict(card, "model_card/model_card.json")
        mlflow.log_text(render_card_html(card), "model_card/model_card.html")
        mlflow.set_tags({"gate.passed": str(decision.passed).lower(),
                         "gate.reasons": " | ".join(decision.reasons)[:5000],
                         "gate.champion_version": champion_version or "none"})
    mlflow_client.set_model_version_tag(name, version, "gate_passed", str(decision.passed).lower())
    mlflow_client.set_model_version_tag(name, version, "gate_reasons", " | ".join(decision.reasons)[:5000])
    for line in decision.reasons:
        (log.info if decision.passed else log.warning)("gate: %s", line)
    log.info("%s version %s: gate %s; model card %s", name, version, "PASSED" if decision.passed else "FAILED",
             lake.uri(f"{key}/model_card.html"))
    return {"model_version": version, "run_id": candidate_version.run_id, "passed": decision.passed,
            "reasons": decision.reasons, "champion_version": champion_version, "roc_auc": scored["candidate"]["metrics"]["roc_auc"],
            "model_card_uri": lake.uri(f"{key}/model_card.html"), "model_card_key": f"{key}/model_card.html"}


def main(argv: list[str] | None = None) -> int:
    import sys

    from jobs.registry import MlflowUnreachable
    from jobs.results import EXIT_OK, emit_result

    parser = step_parser("jobs.evaluate", "Score a candidate version, its baseline and the champion on the "
                         "holdout; run the gate; write the model card.", "--version 7")
    parser.add_argument("--version", required=True, type=model_version, help="candidate model version (from jobs.train)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate_version(args.version)
    except MlflowUnreachable as exc:
        print(f"ERROR jobs.evaluate: {exc}", file=sys.stderr)
        return 1
    emit_result(result)
    return EXIT_OK


if __name__ == "__main__":
    import sys

    sys.exit(main())
