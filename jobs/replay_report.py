"""The loop's evidence: did monitoring-driven retraining earn its keep over a replayed year?

    python -m jobs.replay_report --year 2013 [--months 3-12] [--family torch_mlp]

By month (March to December by default), on the same flights, the served ROC AUC of:
- **live**: what the live loop served (`predictions/flight_delay/`, each day scored by the
  champion serving at its start; every training after the first started by monitoring's policy);
- **frozen**: the first champion (the model trained on January) over the whole stretch, through
  jobs.backtest (the production scoring code and features);
- **calendar**: monthly retraining on an expanding window, through jobs.backtest: for month M a
  model trained on Jan 1 .. the end of M-1 (its last `training.holdout_days` held out, as the
  live loop's trainings hold out their last labelled week), scored over M.
Also by month: the drift share and the days with dataset drift (monitoring's `summary.json` of
each day), and every training of the loop (from the registry: the flight date that started it,
reason, evidence, gate decision, version, promoted or not).

Outputs under `reports/replay/{year}/`: `replay.json`, `replay.html` (the tables) and
`replay.png` (monthly ROC AUC of the three, drift share, training markers), each one atomic
put. The backtests keep their own reports under `reports/backtest/replay{year}_*`; a rerun reuses
the calendar models (jobs.backtest finds a trained version by its training request) and scores again.

Exit 3: the year has no served predictions, or no champion was ever promoted (run `make replay`).
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobs.cli import step_parser
from jobs.lake import Lake, report_key
from jobs.reports import num
from jobs.results import EXIT_OK, EXIT_REJECTED, emit_result, record_rejection

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from pyspark.sql import SparkSession

    from jobs.settings import Settings

log = logging.getLogger("jobs.replay_report")

SIDES = ("live", "frozen", "calendar")


class NoEvidence(ValueError):
    """The lake or the registry holds no loop to report on."""


def replay_key(year: int, name: str = "") -> str:
    return report_key("replay", str(year), name)


def month_bounds(year: int, month: int) -> tuple[dt.date, dt.date]:
    first = dt.date(year, month, 1)
    following = dt.date(year + (month == 12), month % 12 + 1, 1)
    return first, following - dt.timedelta(days=1)


# The comparison ------------------------------------------------------------------------------

Period = tuple[str, dt.date, dt.date]  # (label, first day, last day)


def months_of(year: int, months: Sequence[int]) -> list[Period]:
    return [(f"{year}-{month:02d}", *month_bounds(year, month)) for month in months]


def backtest_requests(tag: str, periods: Sequence[Period], first_champion: str, settings: "Settings",
                      family: str | None) -> dict[str, dict[str, Any]]:
    """The backtests the report compares the live loop with: one frozen, one calendar model per period."""
    holdout = settings.training.holdout_days
    requests = {"frozen": {"version": first_champion, "start": periods[0][1], "end": periods[-1][2],
                           "backtest_id": f"{tag}_frozen_v{first_champion}",
                           "reason": f"{tag}: the first champion, frozen"}}
    for label, first, last in periods:
        train_last = first - dt.timedelta(days=1)
        requests[f"calendar_{label}"] = {
            "train_start": settings.data.first_flight_date, "train_end": train_last - dt.timedelta(days=holdout),
            "holdout_start": train_last - dt.timedelta(days=holdout - 1), "holdout_end": train_last,
            "start": first, "end": last, "family": family or settings.training.family,
            "backtest_id": f"{tag}_calendar_{label}",
            "reason": f"{tag}: calendar retraining on an expanding window, for {label}"}
    return requests


def _backtest_predictions(lake: Lake, summary: dict[str, Any]) -> "pd.DataFrame":
    import pandas as pd

    from jobs.backtest import backtest_predictions_key

    return pd.concat([lake.read_partition(backtest_predictions_key(summary["id"], day["ds"]))
                      for day in summary["days"]], ignore_index=True)


def period_auc(frame: "pd.DataFrame", periods: Sequence[Period], columns: Sequence[str],
               label: str) -> list[dict[str, Any]]:
    """Pooled ROC AUC by period of each probability column, on rows that have all of them and a label."""
    from sklearn.metrics import roc_auc_score

    rows = []
    complete = frame.dropna(subset=[*columns, label])
    for name, first, last in periods:
        part = complete[(complete["flight_date"] >= first) & (complete["flight_date"] <= last)]
        y = part[label].astype(int).to_numpy()
        two_classes = 0 < y.sum() < len(y)
        rows.append({"period": name, "rows": int(len(part)),
                     **{column: float(roc_auc_score(y, part[column])) if two_classes else None for column in columns}})
    return rows


def drift_by_period(lake: Lake, periods: Sequence[Period]) -> list[dict[str, Any]]:
    """Monitoring's verdicts by period: mean drift share, days with dataset drift, days monitored."""
    from jobs.monitor import drift_report_key

    rows = []
    for name, first, last in periods:
        shares, drifted = [], 0
        day = first
        while day <= last:
            key = drift_report_key(day.isoformat(), "summary.json")
            if lake.exists(key):
                data = lake.read_json(key).get("data_drift", {})
                shares.append(float(data.get("drift_share") or 0.0))
                drifted += bool(data.get("dataset_drift"))
            day += dt.timedelta(days=1)
        rows.append({"period": name, "days_monitored": len(shares), "dataset_drift_days": drifted,
                     "mean_drift_share": round(sum(shares) / len(shares), 4) if shares else None})
    return rows


def build_report(lake: Lake, year: int, periods: Sequence[Period], *, settings: "Settings | None" = None,
                 spark: "SparkSession | None" = None, mlflow_client: "MlflowClient | None" = None,
                 family: str | None = None) -> dict[str, Any]:
    """Run the backtests, compare by period (months: `months_of`) on the same flights, write the outputs."""
    import pandas as pd

    from jobs.backtest import read_labels, read_served, run_backtest
    from jobs.features import load_feature_schema
    from jobs.registry import client, training_log
    from jobs.score import PROBABILITY
    from jobs.settings import get_settings
    from jobs.spark import step_session
    from jobs.feeds import LABEL

    settings = settings or get_settings()
    mlflow_client = mlflow_client or client(settings.mlflow.tracking_uri)
    loop = training_log(mlflow_client, settings.mlflow.model_name)
    promoted = [t for t in loop if t["promoted"]]
    if not promoted:
        raise NoEvidence(f"no version of {settings.mlflow.model_name} was ever promoted: run the replay first "
                         "(make replay)")
    start, end = periods[0][1], periods[-1][2]
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    key = list(load_feature_schema(settings.features.schema_path).key)
    served, served_days = read_served(lake, days, key)
    if not served_days:
        raise NoEvidence(f"no served predictions between {start} and {end}: run the replay first (make replay)")

    summaries = {}
    with step_session("replay_report", settings.spark, spark, python_workers=True) as spark:
        for name, request in backtest_requests(f"replay{year}", periods, promoted[0]["version"], settings,
                                               family).items():
            log.info("backtest %s: %s", name, request["reason"])
            summaries[name] = run_backtest(lake, request, settings, spark=spark, mlflow_client=mlflow_client)
    labels = read_labels(lake, sorted(served_days), key)
    frozen = _backtest_predictions(lake, summaries["frozen"])[[*key, PROBABILITY]].rename(
        columns={PROBABILITY: "frozen"})
    calendar = pd.concat([_backtest_predictions(lake, s) for n, s in summaries.items() if n.startswith("calendar")],
                         ignore_index=True)[[*key, PROBABILITY]].rename(columns={PROBABILITY: "calendar"})
    frame = (served.rename(columns={"served_probability": "live"})
             .merge(frozen, on=key, how="left").merge(calendar, on=key, how="left")
             .merge(labels[[*key, LABEL]], on=key, how="inner"))
    frame["flight_date"] = pd.to_datetime(frame[["year", "month", "day"]]).dt.date
    by_period = period_auc(frame, periods, SIDES, LABEL)
    drift = {row["period"]: row for row in drift_by_period(lake, periods)}
    bounds = {name: (first, last) for name, first, last in periods}
    for row in by_period:
        row.update({k: v for k, v in drift.get(row["period"], {}).items() if k != "period"})
        first, last = bounds[row["period"]]
        row["trainings_started"] = sum(1 for t in loop if t["started_on"]
                                       and first <= dt.date.fromisoformat(t["started_on"]) <= last)
    means = {side: _mean([row[side] for row in by_period]) for side in SIDES}
    summary = {
        "year": year, "periods": [row["period"] for row in by_period],
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "by_period": by_period, "mean_roc_auc": means,
        "live_beats_frozen_every_period": all(r["live"] is not None and r["frozen"] is not None and r["live"] > r["frozen"]
                                             for r in by_period),
        "live_mean_at_least_calendar": means["live"] is not None and means["calendar"] is not None
                                       and means["live"] >= means["calendar"],
        "trainings": loop, "first_champion": promoted[0]["version"],
        "backtests": {name: {"id": s["id"], "model_version": s["model"]["version"],
                             "report": s["outputs"]["backtest.html"]} for name, s in summaries.items()},
        "policy": settings.retraining.model_dump(),
    }
    lake.write_bytes(replay_key(year, "replay.png"), render_chart(summary))
    lake.write_text(replay_key(year, "replay.html"), render_html(summary))
    lake.write_json(replay_key(year, "replay.json"), summary)
    log.info("year %s, %s..%s: mean ROC AUC live %s, frozen %s, calendar %s -> %s", year, summary["periods"][0],
             summary["periods"][-1], *(num(means[s]) for s in SIDES), lake.uri(replay_key(year, "replay.html")))
    return summary


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None



def render_html(summary: dict[str, Any]) -> str:
    """A self-contained page: the months' table, the chart, every training of the loop, the backtests."""
    from jobs.reports import render_page

    return render_page("replay.html.j2", summary=summary, sides=SIDES, generated_at=summary["generated_at"])


def render_chart(summary: dict[str, Any]) -> bytes:
    """PNG: monthly ROC AUC of the three sides, drift share bars, a marker per training started."""
    from matplotlib.figure import Figure

    periods = summary["periods"]
    figure = Figure(figsize=(11, 5), dpi=100)
    axes = figure.subplots()
    x = list(range(len(periods)))
    for side, style in zip(SIDES, ("o-", "s--", "^:")):
        axes.plot(x, [float("nan") if r[side] is None else r[side] for r in summary["by_period"]], style,
                  label=f"{side} (mean {num(summary['mean_roc_auc'][side])})")
    axes.set_xticks(x, periods, rotation=30)
    axes.set_ylabel("served ROC AUC")
    axes.grid(alpha=0.3)
    drift = axes.twinx()
    drift.bar(x, [r.get("mean_drift_share") or 0.0 for r in summary["by_period"]], alpha=0.15, color="grey",
              label="mean drift share")
    drift.set_ylim(0, 1)
    drift.set_ylabel("mean drift share (bars)")
    for i, row in enumerate(summary["by_period"]):
        if row["trainings_started"]:
            axes.annotate(f"{row['trainings_started']} training(s)", (i, row["live"] or 0.6), fontsize=7,
                          textcoords="offset points", xytext=(0, 8), ha="center")
    axes.legend(loc="lower left")
    axes.set_title(f"Year replay {summary['year']}: served ROC AUC by period")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _months(text: str) -> list[int]:
    first, _, last = text.partition("-")
    months = list(range(int(first), int(last or first) + 1))
    if not months or months[0] < 1 or months[-1] > 12:
        raise argparse.ArgumentTypeError(f"months {text!r}: expected M or M-N within 1..12")
    return months


def main(argv: list[str] | None = None) -> int:
    from jobs.registry import MlflowUnreachable
    from jobs.settings import get_settings

    parser = step_parser("jobs.replay_report", __doc__.split("\n\n")[0], "--year 2013 --months 3-12",
                         "--year 2013 --months 3-4 --family sklearn_hgb")
    parser.add_argument("--year", type=int, default=2013)
    parser.add_argument("--months", type=_months, default=list(range(3, 13)),
                        help="months to compare, M-N (default 3-12: March to December)")
    parser.add_argument("--family", choices=["torch_mlp", "sklearn_hgb"],
                        help="model family of the calendar retrainings (default: training.family)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    first, last = month_bounds(args.year, args.months[0])[0], month_bounds(args.year, args.months[-1])[1]
    if not (settings.data.covers(first) and settings.data.covers(last)):
        print(f"ERROR jobs.replay_report rejected: {first}..{last} is outside the source "
              f"({settings.data.first_flight_date}..{settings.data.last_flight_date})", file=sys.stderr)
        return EXIT_REJECTED
    try:
        summary = build_report(Lake.from_settings(settings), args.year, months_of(args.year, args.months),
                               settings=settings, family=args.family)
    except NoEvidence as exc:
        print(f"ERROR jobs.replay_report rejected: {exc}", file=sys.stderr)
        record_rejection(str(exc))
        return EXIT_REJECTED
    except MlflowUnreachable as exc:
        print(f"ERROR jobs.replay_report: {exc}", file=sys.stderr)
        return 1
    emit_result({"year": args.year, "mean_roc_auc": summary["mean_roc_auc"],
                 "live_beats_frozen_every_period": summary["live_beats_frozen_every_period"],
                 "live_mean_at_least_calendar": summary["live_mean_at_least_calendar"],
                 "report_key": replay_key(args.year, "replay.html")})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
