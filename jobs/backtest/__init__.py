"""Backtest a model over past flight dates with the production scoring code, against what was served.

    python -m jobs.backtest --version 3 --start 2013-03-01 --end 2013-03-31
    python -m jobs.backtest --alias champion            # the last 14 labelled days
    python -m jobs.backtest --train-start 2013-01-01 --train-end 2013-01-31 --start 2013-02-01 --end 2013-02-28

1. **The model**: a registered version of `mlflow.model_name` (`--version`), the version an
   alias names now (`--alias`, default `champion`), or a model trained for the backtest on a
   named window (`--train-start/--train-end`, holdout by default the `training.holdout_days`
   days after it) through jobs.training_set + jobs.train, as `delay_model_training` trains.
   That model is registered as a version tagged `purpose=backtest` and is never promoted:
   jobs.train points `challenger` at every version it registers, so the backtest puts
   `challenger` back where it was (or removes it if there was none) at once; no other alias
   moves. A rerun of the same training request reuses that version (tag `backtest_train_key`:
   the windows, the training set's inputs and the hyperparameters).
2. **Scoring**: the dates of the window that have features and outcomes, scored by
   jobs.score's own code (`score_with_model`: the same features partitions, `spark_udf`,
   casts and stamps) into `reports/backtest/{id}/predictions/date={ds}/`, never the
   production predictions zone.
3. **Comparison**, day by day and over the window: the labels are the outcomes
   (`raw/flights/date={ds}/`) through jobs.training_set's label rule (`is_delayed` =
   arr_delay >= 15; cancelled flights have no label and are counted apart). Where the day was
   served (`predictions/flight_delay/date={ds}/`, with its `model_version`), both the
   backtested and the served probabilities are measured on the same flights (those that have
   both and a label): ROC AUC, PR AUC (average precision), log loss, Brier, calibration (ECE),
   via jobs.evaluate. A day that was not served has the backtest's metrics only.
4. **Outputs** under `reports/backtest/{id}/`: `backtest.json` (request, model version and
   run id, per-day rows, totals, warnings), `backtest.html` (the table) and `backtest.png`
   (daily ROC AUC, backtested vs served), each one atomic put (jobs.lake). `id` comes from
   the request: `v{version}_{start}_{end}`, or `window_{train_start}_{train_end}_{start}_{end}_{hash}`,
   or `--id`; a rerun replaces the outputs of the same id.

Window default: the last 14 days with features and outcomes (from --start, or back from
--end, when only one is given). Bad input is rejected before any work, every problem named
(exit 3): a window outside the source's flight dates, end before start, a version that does
not exist, a window without outcomes or without features, a training window that overlaps the
backtest window. Exit 4: nothing to backtest (the alias names no version yet, no labelled
day in the lake). Exit 1: anything else (MLflow unreachable: named, retried by Airflow).

stdout: one `STEP_RESULT {"backtest_id", "model_version", "model_run_id", "window", "days",
"rows", "backtest_roc_auc", "served_roc_auc", "json_uri", "report_uri", "report_key", ...}`.

Modules: `request` (the request, checked into a plan), `training` (the model of a training
window), `compare` (backtested vs served), `report` (page and chart), `run` (one backtest), `cli`.
"""
from __future__ import annotations

from jobs.backtest.cli import build_parser, main
from jobs.backtest.compare import (METRIC_NAMES, SERVED_PROBABILITY, SERVED_VERSION, compare, model_metrics, read_labels,
                                   read_served)
from jobs.backtest.report import render_chart, render_html
from jobs.backtest.request import (DEFAULT_ALIAS, DEFAULT_WINDOW_DAYS, ID_PATTERN, BacktestRejected, BacktestRequest,
                                   NothingToBacktest, Plan, backtest_key, backtest_predictions_key, check_request)
from jobs.backtest.run import result_line, run_backtest
from jobs.backtest.training import trained_model

__all__ = ["DEFAULT_ALIAS", "DEFAULT_WINDOW_DAYS", "ID_PATTERN", "METRIC_NAMES", "SERVED_PROBABILITY",
           "SERVED_VERSION", "BacktestRejected", "BacktestRequest", "NothingToBacktest", "Plan", "backtest_key",
           "backtest_predictions_key", "build_parser", "check_request", "compare", "main", "model_metrics",
           "read_labels", "read_served", "render_chart", "render_html", "result_line", "run_backtest",
           "trained_model"]
