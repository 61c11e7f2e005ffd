"""The leakage guard's measure (single_feature_aucs): how well each model input alone ranks the holdout's labels.

An input that alone ranks the labels better than the gate's ceiling allows (a leaked
`dep_delay`, say) means the outcome reached the features; jobs/evaluate.py computes these
figures for the gate (jobs/gate.py, its `leakage` check).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from jobs.model.labels import check_labels, roc_auc
from jobs.model.preprocessing import FeatureSpec, as_float, as_strings


def single_feature_aucs(train: pd.DataFrame, y_train: Any, holdout: pd.DataFrame, y_holdout: Any,
                        features: FeatureSpec) -> dict[str, float]:
    """ROC AUC of each model input alone on `holdout`, as max(auc, 1 - auc) (the gate's leakage guard).

    A numeric scores by its value (nulls as the training median); a categorical by its
    training delay rate per value (unknown values: the overall rate).
    """
    y_tr, y_ho = check_labels(train, y_train, "train"), check_labels(holdout, y_holdout, "holdout")
    out = {}
    for column in features.categorical:
        train_values, _ = as_strings(train[column])
        rates = pd.Series(y_tr).groupby(train_values).mean()
        scores = pd.Series(as_strings(holdout[column])[0]).map(rates).fillna(float(y_tr.mean())).to_numpy()
        out[column] = roc_auc(y_ho, scores)
    for column in features.numeric:
        median = np.nanmedian(as_float(train[column])) if np.isfinite(as_float(train[column])).any() else 0.0
        x = as_float(holdout[column])
        out[column] = roc_auc(y_ho, np.where(np.isnan(x), median, x))
    return {name: max(auc, 1.0 - auc) for name, auc in out.items()}
