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

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

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
