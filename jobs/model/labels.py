"""The 0/1 labels the trainers and the leakage guard take (`jobs.feeds.LABEL`): checked against their rows, and ROC AUC."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from jobs.feeds import LABEL


def check_labels(frame: pd.DataFrame, labels: Any, what: str) -> np.ndarray:
    """`labels` as float32 0/1, one per row of `frame`, both classes present; else a ValueError naming `what`."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if len(y) != len(frame):
        raise ValueError(f"{what}: {len(frame)} rows but {len(y)} labels")
    if np.isnan(y).any() or not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{what}: labels ({LABEL}) must be 0/1 with no nulls "
                         "(drop cancelled flights before training)")
    if len(np.unique(y)) < 2:
        raise ValueError(f"{what}: labels hold one class only")
    return y.astype(np.float32)


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))
