"""A fitted model of either family with its preprocessing (TrainedModel): what the trainers return and the pyfunc wraps.

Both families predict from the same raw feature rows through their `Preprocessor`: the torch
network takes (codes, numeric matrix) as they are, HistGradientBoosting one float matrix of
the codes (its native categories) followed by the numerics (`hgb_matrix`).

Needs torch, numpy and pandas only (scikit-learn to unpickle an HGB estimator); it travels
inside each logged model (jobs/model/pyfunc.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
import torch

from jobs.model.network import predict
from jobs.model.preprocessing import FeatureSpec, Preprocessor

# A trainer's report after each epoch (HGB: each boosting iteration): step, {metric: value}.
EpochCallback = Callable[[int, dict[str, float]], None]


def hgb_matrix(codes: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    """HistGradientBoosting's input: the categorical codes (its native categories), then the numeric matrix."""
    return np.hstack([codes.astype(np.float64), numeric.astype(np.float64)])


@dataclass
class TrainedModel:
    """A fitted model of either family with its preprocessing; what `log_model` logs."""

    family: Literal["torch", "hgb"]
    preprocessor: Preprocessor
    estimator: Any  # TabularNet or TabularEnsemble (eval mode, on `device`), or HistGradientBoostingClassifier
    config: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    device: str = "cpu"
    samples_per_s: float = 0.0  # training throughput: rows x epochs (HGB: x iterations) per second of fitting
    train_seconds: float = 0.0
    best_epoch: int = 0  # torch: the epoch whose weights were kept (the latest among members); HGB: iterations
    valid_auc: float = float("nan")

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The probability of the label (`jobs.feeds.LABEL`) per row of `frame` (raw feature rows), float64."""
        codes, numeric = self.preprocessor.transform(frame)
        if self.family == "hgb":
            return self.estimator.predict_proba(hgb_matrix(codes, numeric))[:, 1].astype(np.float64)
        return predict(self.estimator, codes, numeric, torch.device(self.device))

    @property
    def features(self) -> FeatureSpec:
        return self.preprocessor.features
