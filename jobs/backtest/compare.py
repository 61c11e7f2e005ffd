"""Backtested against served predictions, day by day and over the window, on the same labelled flights."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobs.lake import Lake, raw_key

if TYPE_CHECKING:
    import pandas as pd


# What each side of a day reports (jobs.evaluate.scalar_metrics' names).
METRIC_NAMES = ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_ece", "positive_rate", "precision", "recall")
SERVED_PROBABILITY, SERVED_VERSION = "served_probability", "served_version"


def read_labels(lake: Lake, days: Sequence[str], key: Sequence[str]) -> "pd.DataFrame":
    """The flight key and `is_delayed` of the days' outcomes, by jobs.training_set's label rule (null: cancelled)."""
    import pyarrow as pa

    from jobs.training_set import label_table

    outcomes = [lake.read_table(raw_key("flights", ds), [*key, "arr_delay"])[0] for ds in days]
    return label_table(pa.concat_tables(outcomes, promote_options="default")).to_pandas()


def read_served(lake: Lake, days: Sequence[str], key: Sequence[str]) -> tuple["pd.DataFrame", set[str]]:
    """What production served on the days that were served (key, served probability and version), and those days."""
    import pandas as pd

    from jobs.lake import PartitionNotFound
    from jobs.score import PROBABILITY, predictions_key

    frames, served_days = [], set()
    for ds in days:
        try:
            table, _ = lake.read_table(predictions_key(ds), [*key, PROBABILITY, "model_version"])
        except PartitionNotFound:
            continue
        frames.append(table.to_pandas())
        served_days.add(ds)
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=float if column == SERVED_PROBABILITY else object)
                             for column in (SERVED_PROBABILITY, SERVED_VERSION)}), served_days
    served = pd.concat(frames, ignore_index=True)
    return served.rename(columns={PROBABILITY: SERVED_PROBABILITY, "model_version": SERVED_VERSION}), served_days


def model_metrics(y: Any, probability: Any, threshold: float) -> dict[str, Any] | None:
    """jobs.evaluate's metrics of one side on some rows (None without rows)."""
    import numpy as np

    from jobs.evaluate import holdout_metrics, scalar_metrics

    if len(y) == 0:
        return None
    measured = scalar_metrics(holdout_metrics(y, probability, threshold=threshold))
    return {"rows": int(len(y)), **{name: measured.get(name) for name in METRIC_NAMES},
            "mean_probability": float(np.mean(probability))}


def compare(backtest: "pd.DataFrame", labels: "pd.DataFrame", served: "pd.DataFrame", key: Sequence[str],
            served_days: set[str], threshold: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(per-day rows, totals) of the backtest's predictions against the labels and what was served."""
    from jobs.score import PROBABILITY
    from jobs.feeds import LABEL

    key = list(key)
    joined = (backtest[[*key, "flight_date", PROBABILITY]]
              .merge(labels[[*key, LABEL]], on=key, how="left", indicator="outcome"))
    if served.empty:  # nothing served in the window: no key columns to join on
        joined[SERVED_PROBABILITY], joined[SERVED_VERSION] = float("nan"), None
    else:
        joined = joined.merge(served[[*key, SERVED_PROBABILITY, SERVED_VERSION]], on=key, how="left")
    joined["ds"] = joined["flight_date"].astype(str)
    joined["no_outcome"] = joined["outcome"] == "left_only"
    joined["cancelled"] = ~joined["no_outcome"] & joined[LABEL].isna()
    joined["served_day"] = joined["ds"].isin(served_days)
    labelled = ~joined["no_outcome"] & ~joined["cancelled"]
    # On a served day only the flights that were served are compared, so both sides see the same rows.
    joined["compared"] = labelled & (~joined["served_day"] | joined[SERVED_PROBABILITY].notna())
    joined["served_missing"] = labelled & joined["served_day"] & joined[SERVED_PROBABILITY].isna()

    def sides(rows: pd.DataFrame) -> dict[str, Any]:
        y = rows[LABEL].astype(int).to_numpy()
        on_served = rows[rows["served_day"]]
        return {"rows": int(len(rows)),
                "backtest": model_metrics(y, rows[PROBABILITY].to_numpy(), threshold),
                "served": model_metrics(on_served[LABEL].astype(int).to_numpy(),
                                        on_served[SERVED_PROBABILITY].to_numpy(), threshold),
                "served_versions": sorted(on_served[SERVED_VERSION].astype(str).unique().tolist())}

    def counts(frame: pd.DataFrame) -> dict[str, int]:
        return {name: int(frame[name].sum()) for name in ("cancelled", "no_outcome", "served_missing")}

    per_day = []
    for ds, day in joined.groupby("ds", sort=True):
        served_day = ds in served_days
        per_day.append({"ds": ds, "scored": int(len(day)), **counts(day), **sides(day[day["compared"]]),
                        "served_status": "served" if served_day else "not served"})
    compared = joined[joined["compared"]]
    totals = {"days": len(per_day), "scored": int(len(joined)), **counts(joined), **sides(compared),
              "served_days": sum(1 for day in per_day if day["served_status"] == "served")}
    # Over the window both sides are paired only on the served days' flights.
    totals["backtest_on_served_rows"] = model_metrics(
        compared.loc[compared["served_day"], LABEL].astype(int).to_numpy(),
        compared.loc[compared["served_day"], PROBABILITY].to_numpy(), threshold)
    return per_day, totals

