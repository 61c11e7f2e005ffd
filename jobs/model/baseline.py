"""Training the scikit-learn HistGradientBoosting baseline (train_hgb) on the torch model's preprocessing and validation rows.

The same `Preprocessor` (categorical codes as HGB's native categories, `max_categories`
keeps them under its 255 bins) and early stopping on the same validation rows (`X_val`),
so the gate compares like with like.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from jobs.model.labels import check_labels, roc_auc
from jobs.model.preprocessing import FeatureSpec, Preprocessor, resolve_features
from jobs.model.trained import EpochCallback, TrainedModel, hgb_matrix


@dataclass
class HgbConfig:
    """Hyperparameters of `train_hgb`."""

    learning_rate: float = 0.05
    max_iter: int = 1000
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 100
    l2_regularization: float = 1.0
    n_iter_no_change: int = 30
    min_category_count: int = 20
    max_categories: int | None = 254  # native categories must fit in HGB's 255 bins
    seed: int = 13
    num_threads: int | None = None  # OpenMP threads of the fit (None: scikit-learn's default, every core)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def train_hgb(
    train: pd.DataFrame,
    y_train: Any,
    valid: pd.DataFrame,
    y_valid: Any,
    *,
    features: FeatureSpec | None = None,
    exclude: Sequence[str] | None = None,
    config: HgbConfig | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainedModel:
    """The scikit-learn HistGradientBoosting baseline on the same preprocessing and validation rows.

    Early stopping on `valid` (validation log loss, `n_iter_no_change` iterations). After the
    fit, `on_epoch(iteration, {"train_loss", "valid_loss"})` for each boosting iteration
    (the training loss is sklearn's, on a 10k-row sample of the training rows).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    config = config or HgbConfig()
    features = resolve_features(features, exclude)
    y_tr, y_va = check_labels(train, y_train, "train"), check_labels(valid, y_valid, "valid")
    started = time.perf_counter()
    preprocessor = Preprocessor.fit(train, features, min_category_count=config.min_category_count,
                                    max_categories=config.max_categories)
    x_train = hgb_matrix(*preprocessor.transform(train))
    x_valid = hgb_matrix(*preprocessor.transform(valid))
    categorical = np.zeros(x_train.shape[1], dtype=bool)
    categorical[:len(preprocessor.categorical)] = True
    model = HistGradientBoostingClassifier(
        learning_rate=config.learning_rate, max_iter=config.max_iter, max_leaf_nodes=config.max_leaf_nodes,
        min_samples_leaf=config.min_samples_leaf, l2_regularization=config.l2_regularization,
        categorical_features=categorical, early_stopping=True, scoring="loss",
        n_iter_no_change=config.n_iter_no_change, random_state=config.seed,
    )
    t0 = time.perf_counter()
    with threadpool_limits(limits=config.num_threads, user_api="openmp"):
        model.fit(x_train, y_tr.astype(np.int64), X_val=x_valid, y_val=y_va.astype(np.int64))
    fit_seconds = time.perf_counter() - t0
    history = [{"epoch": i, "train_loss": float(-t), "valid_loss": float(-v)}
               for i, (t, v) in enumerate(zip(model.train_score_, model.validation_score_)) if i > 0]
    if on_epoch is not None:
        for entry in history:
            on_epoch(int(entry["epoch"]), {k: v for k, v in entry.items() if k != "epoch"})
    valid_auc = roc_auc(y_va, model.predict_proba(x_valid)[:, 1])
    return TrainedModel(
        family="hgb", preprocessor=preprocessor, estimator=model, config=config.to_json(), history=history,
        device="cpu", samples_per_s=len(x_train) * model.n_iter_ / max(fit_seconds, 1e-9),
        train_seconds=time.perf_counter() - started, best_epoch=int(model.n_iter_), valid_auc=valid_auc,
    )
