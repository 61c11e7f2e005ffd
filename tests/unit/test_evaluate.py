"""Holdout metrics (jobs/evaluate.py) against hand-checkable cases and scikit-learn."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from jobs.evaluate import calibration, holdout_metrics, scalar_metrics
from jobs.gate import ModelMetrics


def test_perfect_and_inverted_rankings():
    y = np.array([0, 0, 1, 1])
    assert holdout_metrics(y, [0.1, 0.2, 0.8, 0.9])["roc_auc"] == 1.0
    assert holdout_metrics(y, [0.9, 0.8, 0.2, 0.1])["roc_auc"] == 0.0


def test_metrics_slices_and_the_gate_reads_them():
    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame({"carrier": rng.choice(["UA", "B6", "EV"], n), "origin": rng.choice(["EWR", "JFK"], n)})
    signal = rng.normal(size=n)
    y = (signal + rng.normal(scale=1.0, size=n) > 0.8).astype(int)
    p = 1 / (1 + np.exp(-signal))
    metrics = holdout_metrics(y, p, frame, threshold=0.6)
    assert metrics["rows"] == n and metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    ua = frame["carrier"].to_numpy() == "UA"
    assert metrics["slices"]["carrier"]["UA"] == {"auc": pytest.approx(roc_auc_score(y[ua], p[ua])),
                                                  "rows": int(ua.sum())}
    assert set(metrics["slices"]["origin"]) == {"EWR", "JFK"}
    predicted = p >= 0.6
    assert metrics["precision"] == pytest.approx((predicted & (y == 1)).sum() / predicted.sum())
    assert metrics["recall"] == pytest.approx((predicted & (y == 1)).sum() / y.sum())
    assert ModelMetrics.from_json(metrics).slices["carrier"]["UA"].rows == int(ua.sum())
    logged = scalar_metrics(metrics, "holdout_")
    assert set(logged) >= {"holdout_roc_auc", "holdout_pr_auc", "holdout_log_loss", "holdout_brier",
                           "holdout_calibration_ece"}


def test_a_one_class_slice_has_no_auc():
    frame = pd.DataFrame({"carrier": ["AA", "AA", "UA", "UA"], "origin": ["EWR"] * 4})
    metrics = holdout_metrics([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9], frame)
    assert metrics["slices"]["carrier"]["AA"] == {"auc": None, "rows": 2}


def test_calibration_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=50_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert calibration(y, p)["ece"] < 0.01
    overconfident = np.where(p > 0.5, 0.99, 0.01)
    assert calibration(y, overconfident)["ece"] > 0.2
    assert sum(b["rows"] for b in calibration(y, p)["bins"]) == p.size


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="3 labels but 2 probabilities"):
        holdout_metrics([0, 1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="no holdout rows"):
        holdout_metrics([], [])
