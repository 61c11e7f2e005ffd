"""Drift of a day's data and predictions against a model's training reference, with Evidently.

    sample, info = stratified_sample(frame, max_rows=20000, by="origin", seed=13)
    result = data_drift(reference, current, columns, categorical, drift_share=0.3)
    result.summary["dataset_drift"], result.summary["drifted_columns"]; result.snapshot.save_html(...)

Pure functions on pandas frames; I/O (the lake, MLflow) is jobs/monitor.py's.

- **Bounded cost.** Evidently holds both sides in pandas and its per-column tests grow with
  the rows, so each side is first sampled down to `max_rows` rows, stratified by a column
  (proportional allocation, at least one row per stratum, seeded): a check of a day at 100x
  the flights costs about what a normal day costs. Each sample records its size and the size
  it was drawn from.
- **The reference** is a sample of the training set stored with the model at training time
  (`REFERENCE_ARTIFACT` in the model's run): its input columns and the model's own
  probability on each row, so prediction drift compares like with like.
- **Tests.** Evidently picks each column's test from its type and the sample size: for
  samples over 1000 rows, normed Wasserstein distance (numeric) or Jensen-Shannon distance
  (categorical), drifted at or above a threshold (Evidently's default 0.1, or the settings').
  Distances, unlike p-values, do not turn every column into "drift" as the sample grows.
  The dataset drifts when at least `drift_share` of the columns drift.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.feeds import LABEL

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("jobs.drift")

REFERENCE_ARTIFACT = "reference/reference_sample.parquet"
PROBABILITY = "probability"
# Columns of the reference sample that are not model inputs.
REFERENCE_EXTRA = ("flight_date", LABEL, PROBABILITY)


def stratified_sample(frame: "pd.DataFrame", max_rows: int, by: str | None, seed: int) -> tuple["pd.DataFrame", dict[str, Any]]:
    """At most `max_rows` rows of `frame`, each stratum of `by` in proportion (at least one row each).

    Returns the sample and what was done: {"rows", "of_rows", "stratified_by", "sampled"}.
    """
    import numpy as np

    info = {"rows": int(len(frame)), "of_rows": int(len(frame)), "stratified_by": by, "sampled": False}
    if len(frame) <= max_rows:
        return frame, info
    rng = np.random.default_rng(seed)
    if by is None or by not in frame.columns:
        picked = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    else:
        strata = frame[by].astype("string").fillna("<null>").to_numpy()
        values, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
        # Proportional allocation by largest remainder, at least one row per stratum.
        exact = counts * (max_rows / len(frame))
        quota = np.maximum(np.floor(exact).astype(int), 1)
        leftover = max_rows - quota.sum()
        if leftover > 0:
            quota[np.argsort(-(exact - np.floor(exact)))[:leftover]] += 1
        quota = np.minimum(quota, counts)
        picked = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(inverse == i), size=quota[i], replace=False) for i in range(len(values))
        ]))
    sample = frame.iloc[picked].reset_index(drop=True)
    info.update(rows=int(len(sample)), sampled=True)
    return sample, info


@dataclass
class DriftResult:
    summary: dict[str, Any]  # JSON-ready: what the report, the decision and MLflow use
    snapshot: Any  # the Evidently snapshot: save_html / dict


def reference_sample(train: "pd.DataFrame", trained: Any, max_rows: int, seed: int) -> tuple["pd.DataFrame", dict[str, Any]]:
    """The drift reference of a model: a sample of its training rows (stratified by flight date), as the
    model's inputs, with the flight date, the label and the model's probability on each row."""
    from jobs.model import serving_frame

    sample, info = stratified_sample(train, max_rows, "flight_date", seed)
    reference = serving_frame(sample, trained.preprocessor)
    reference["flight_date"] = sample["flight_date"].astype(str).to_numpy()
    if LABEL in sample.columns:
        reference[LABEL] = sample[LABEL].astype("int64").to_numpy()
    reference[PROBABILITY] = trained.predict_proba(sample)
    return reference, info


def _column_results(snapshot_dict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{column: {"method", "threshold", "score", "drifted"}} from an Evidently snapshot's dict()."""
    columns = {}
    for metric in snapshot_dict["metrics"]:
        config = metric.get("config", {})
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        method, threshold, score = config.get("method", ""), float(config.get("threshold", 0.1)), metric["value"]
        score = None if score is None else float(score)
        # p-value tests drift below their threshold, distances above it.
        is_p_value = "p_value" in method.lower()
        drifted = score is not None and (score < threshold if is_p_value else score >= threshold)
        columns[config["column"]] = {"method": method, "threshold": threshold, "score": score, "drifted": drifted}
    return columns


def _dataset(frame: "pd.DataFrame", numerical: Sequence[str], categorical: Sequence[str]):
    from evidently import DataDefinition, Dataset

    frame = frame[[*numerical, *categorical]].copy()
    for column in categorical:  # Evidently compares categories as values: strings, nulls as their own value
        frame[column] = frame[column].astype("string").fillna("<null>").astype(object)
    for column in numerical:
        frame[column] = frame[column].astype("float64")
    return Dataset.from_pandas(frame, data_definition=DataDefinition(numerical_columns=list(numerical),
                                                                    categorical_columns=list(categorical)))


def data_drift(reference: "pd.DataFrame", current: "pd.DataFrame", numerical: Sequence[str],
               categorical: Sequence[str], drift_share: float, *, numerical_threshold: float | None = None,
               categorical_threshold: float | None = None) -> DriftResult:
    """Per-column drift of `current` against `reference` and the dataset verdict (Evidently's DataDriftPreset)."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    columns = [*numerical, *categorical]
    missing = sorted(set(columns) - set(current.columns))
    if missing:
        raise ValueError(f"the current data lacks the reference's columns {missing}")
    # A column with no value on a side (wind_gust on a calm day) has no distribution to compare:
    # reported as empty, left out of the share.
    empty = [c for c in columns if current[c].isna().all() or reference[c].isna().all()]
    numerical = [c for c in numerical if c not in empty]
    categorical = [c for c in categorical if c not in empty]
    report = Report([DataDriftPreset(columns=[*numerical, *categorical], drift_share=drift_share,
                                     num_threshold=numerical_threshold, cat_threshold=categorical_threshold)])
    snapshot = report.run(current_data=_dataset(current, numerical, categorical),
                          reference_data=_dataset(reference, numerical, categorical))
    per_column = _column_results(snapshot.dict())
    drifted = sorted((c for c, r in per_column.items() if r["drifted"]),
                     key=lambda c: -(per_column[c]["score"] or 0.0))
    share = len(drifted) / len(per_column) if per_column else 0.0
    summary = {"dataset_drift": share >= drift_share, "drift_share": round(share, 4), "policy_drift_share": drift_share,
               "drifted_columns": drifted, "columns": per_column, "empty_columns": empty,
               "reference_rows": int(len(reference)),
               "current_rows": int(len(current))}
    return DriftResult(summary, snapshot)


def prediction_drift(reference: "pd.Series", current: "pd.Series", threshold: float | None = None) -> DriftResult:
    """Drift of the served probabilities against the model's own probabilities on its training reference."""
    import pandas as pd
    from evidently import Report
    from evidently.metrics import ValueDrift

    report = Report([ValueDrift(column=PROBABILITY, threshold=threshold)])
    snapshot = report.run(
        current_data=_dataset(pd.DataFrame({PROBABILITY: current.to_numpy()}), [PROBABILITY], []),
        reference_data=_dataset(pd.DataFrame({PROBABILITY: reference.to_numpy()}), [PROBABILITY], []))
    result = _column_results(snapshot.dict())[PROBABILITY]
    summary = {"drifted": result["drifted"], "method": result["method"], "threshold": result["threshold"],
               "score": result["score"], "reference_mean": round(float(reference.mean()), 6),
               "current_mean": round(float(current.mean()), 6), "reference_rows": int(len(reference)),
               "current_rows": int(len(current))}
    return DriftResult(summary, snapshot)
