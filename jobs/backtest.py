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
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobs.lake import Lake, partition_key, raw_key, report_key
from jobs.reports import num
from jobs.results import EXIT_OK, EXIT_REJECTED, EXIT_SKIPPED, SKIP_PREFIX, emit_result, record_rejection

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from pyspark.sql import SparkSession

    from jobs.score import ServingModel
    from jobs.settings import Settings
    from jobs.training_set import Windows

log = logging.getLogger("jobs.backtest")

# Days of the default window (the last labelled ones). Candidate setting: backtest.window_days.
DEFAULT_WINDOW_DAYS = 14
DEFAULT_ALIAS = "champion"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
# What each side of a day reports (jobs.evaluate.scalar_metrics' names).
METRIC_NAMES = ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_ece", "positive_rate", "precision", "recall")
SERVED_PROBABILITY, SERVED_VERSION = "served_probability", "served_version"


class BacktestRejected(ValueError):
    """The request cannot be backtested as asked: names every problem."""


class NothingToBacktest(RuntimeError):
    """No model behind the alias yet, or no labelled day at all: a skip with its reason."""


@dataclasses.dataclass(frozen=True)
class BacktestRequest:
    """What to backtest. Every field is optional; see the module docstring for the defaults."""

    start: dt.date | None = None
    end: dt.date | None = None
    version: str | None = None
    alias: str | None = None
    train_start: dt.date | None = None
    train_end: dt.date | None = None
    holdout_start: dt.date | None = None
    holdout_end: dt.date | None = None
    family: str | None = None
    seed: int | None = None
    backtest_id: str | None = None
    reason: str = ""

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> "BacktestRequest":
        """From a dict of strings (a DAG conf, the year replay); unknown keys are an error naming them."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(payload) - set(fields))
        if unknown:
            raise BacktestRejected(f"unknown backtest request field(s) {unknown} (known: {sorted(fields)})")
        values: dict[str, Any] = {}
        problems = []
        for name, value in payload.items():
            if value in (None, ""):
                continue
            if "date" in str(fields[name].type) and not isinstance(value, dt.date):
                try:
                    value = dt.date.fromisoformat(str(value)[:10])
                except ValueError:
                    problems.append(f"{name} {value!r} is not a date (YYYY-MM-DD)")
                    continue
            if name == "seed":
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    problems.append(f"seed {value!r} is not a whole number")
                    continue
            values[name] = str(value) if name == "version" else value
        if problems:
            raise BacktestRejected("; ".join(problems))
        return cls(**values)

    @property
    def trains(self) -> bool:
        return self.train_start is not None or self.train_end is not None

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in dataclasses.asdict(self).items()
                if v not in (None, "")}


@dataclasses.dataclass
class Plan:
    """A checked request: the window, the days to compare, where the model comes from, the id."""

    start: dt.date
    end: dt.date
    days: list[str]  # dates with features and outcomes
    left_out: dict[str, str]  # date -> why it is not compared
    backtest_id: str
    model: "ServingModel | None"  # None until trained
    windows: "Windows | None" = None  # training windows, when the request trains
    train_key: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)


def backtest_key(backtest_id: str, name: str = "") -> str:
    return report_key("backtest", backtest_id, name) if name else report_key("backtest", backtest_id)


def backtest_predictions_key(backtest_id: str, ds: str) -> str:
    return partition_key("reports", f"backtest/{backtest_id}/predictions", ds)


# Checking the request ----------------------------------------------------------------------

def _window(request: BacktestRequest, lake: Lake, first: dt.date, last: dt.date) -> tuple[dt.date, dt.date]:
    """The window asked for, or its defaults (module docstring)."""
    from jobs.training_set import last_labelled_date

    span = dt.timedelta(days=DEFAULT_WINDOW_DAYS - 1)
    start, end = request.start, request.end
    if start is None and end is None:
        end = last_labelled_date(lake)
        if end is None:
            raise NothingToBacktest("no labelled day in the lake yet (features and outcomes): nothing to backtest")
    if start is None:
        start = max(end - span, first)
    if end is None:
        end = min(start + span, last)
    return start, end


def _version_problems(mlflow_client: "MlflowClient", name: str, version: str) -> tuple[Any, list[str]]:
    """(the registered version, []) or (None, [why it cannot be backtested])."""
    from mlflow.exceptions import MlflowException

    if not version.isdigit():
        return None, [f"version {version!r} is not a version number"]
    try:
        found = mlflow_client.get_model_version(name, version)
    except MlflowException:
        known = sorted(int(v.version) for v in mlflow_client.search_model_versions(f"name = '{name}'"))
        return None, [f"{name} version {version} does not exist (registered versions: "
                      f"{', '.join(map(str, known)) or 'none'})"]
    if found.status not in (None, "READY"):
        return None, [f"{name} version {version} is {found.status}, not READY"]
    return found, []


def _training_windows(request: BacktestRequest, settings: "Settings", problems: list[str]) -> "Windows | None":
    from jobs.training_set import Windows

    data = settings.data
    if request.train_start is None or request.train_end is None:
        problems.append("a training window needs both train_start and train_end")
        return None
    holdout_start = request.holdout_start or request.train_end + dt.timedelta(days=1)
    holdout_end = request.holdout_end or min(holdout_start + dt.timedelta(days=settings.training.holdout_days - 1),
                                             data.last_flight_date)
    for name, day in (("train_start", request.train_start), ("train_end", request.train_end),
                      ("holdout_start", holdout_start), ("holdout_end", holdout_end)):
        if not data.covers(day):
            problems.append(f"{name} {day} is outside the source's flight dates "
                            f"({data.first_flight_date}..{data.last_flight_date})")
    try:
        return Windows(request.train_start, request.train_end, holdout_start, holdout_end)
    except ValueError as exc:
        problems.append(str(exc))
        return None


def _train_key(lake: Lake, windows: "Windows", request: BacktestRequest, settings: "Settings",
               problems: list[str]) -> str | None:
    """The identity of the model the request trains (None, with the problem, when its windows cannot train)."""
    from jobs.features import load_feature_schema
    from jobs.training_set import SPLITS, plan_inputs, set_id_of

    plan = plan_inputs(lake, windows)
    for split in SPLITS:
        if not plan[split].features:
            dates = windows.dates(split)
            problems.append(f"{split} window {dates[0]}..{dates[-1]} has no date with both features and outcomes")
    if problems:
        return None
    defaults = settings.training
    identity = {"set_id": set_id_of(windows, plan, load_feature_schema(settings.features.schema_path).sha256),
                "family": request.family or defaults.family, "seed": defaults.seed if request.seed is None else request.seed,
                "epochs": defaults.epochs, "batch_size": defaults.batch_size, "learning_rate": defaults.learning_rate,
                "validation_days": defaults.validation_days, "exclude": list(defaults.exclude_features)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def _overlap(first: tuple[dt.date, dt.date], second: tuple[dt.date, dt.date]) -> bool:
    return first[0] <= second[1] and second[0] <= first[1]


def check_request(lake: Lake, request: BacktestRequest, settings: "Settings",
                  mlflow_client: "MlflowClient") -> Plan:
    """The plan of a request, or BacktestRejected naming every problem (NothingToBacktest for a skip)."""
    from jobs.features import features_key
    from jobs.registry import alias_version
    from jobs.score import ServingModel

    data, name = settings.data, settings.mlflow.model_name
    problems: list[str] = []
    if request.trains and (request.version or request.alias):
        problems.append("give a training window or a version/alias, not both")
    if request.version and request.alias:
        problems.append(f"give --version or --alias, not both (version {request.version}, alias {request.alias})")
    if request.backtest_id is not None and not ID_PATTERN.match(request.backtest_id):
        problems.append(f"id {request.backtest_id!r} must be letters, digits, '.', '_' or '-' (at most 120)")
    start, end = _window(request, lake, data.first_flight_date, data.last_flight_date)
    if end < start:
        problems.append(f"the window ends ({end}) before it starts ({start})")
    for what, day in (("start", start), ("end", end)):
        if not data.covers(day):
            problems.append(f"{what} {day} is outside the source's flight dates "
                            f"({data.first_flight_date}..{data.last_flight_date})")

    days: list[str] = []
    left_out: dict[str, str] = {}
    if not problems:
        window = [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
        features = {ds for ds in window if lake.partition_exists(features_key(ds))}
        outcomes = {ds for ds in window if lake.partition_exists(raw_key("flights", ds))}
        if not features:
            problems.append(f"no features partition in the window {start}..{end} "
                            f"({lake.uri(features_key(start.isoformat()))} ...): build them with flights_features")
        if not outcomes:
            problems.append(f"no labels in the window {start}..{end}: no outcomes partition "
                            f"({lake.uri(raw_key('flights', start.isoformat()))} ...) has arrived")
        if features and outcomes and not features & outcomes:
            problems.append(f"no date of the window {start}..{end} has both features and outcomes")
        days = [ds for ds in window if ds in features and ds in outcomes]
        left_out = {ds: ("no features partition" if ds not in features else "no outcomes (labels) yet")
                    for ds in window if ds not in days}

    model, windows, train_key, warnings = None, None, None, []
    threshold = settings.training.decision_threshold
    if request.trains:
        windows = _training_windows(request, settings, problems)
        if windows is not None and _overlap((windows.train_start, windows.train_end), (start, end)):
            problems.append(f"the training window {windows.train_start}..{windows.train_end} overlaps the backtest "
                            f"window {start}..{end}: the model would be scored on its own training days")
        if windows is not None and not problems:
            train_key = _train_key(lake, windows, request, settings, problems)
    elif request.version:
        found, found_problems = _version_problems(mlflow_client, name, request.version)
        problems.extend(found_problems)
        if found is not None:
            model = ServingModel(name, str(found.version), found.run_id, threshold)
    else:
        alias = request.alias or DEFAULT_ALIAS
        version = alias_version(mlflow_client, name, alias)
        if version is None and not problems:
            raise NothingToBacktest(f"no {name}@{alias} yet: nothing to backtest")
        if version is not None:
            found, found_problems = _version_problems(mlflow_client, name, version)
            problems.extend(f"{name}@{alias}: {problem}" for problem in found_problems)
            if found is not None:
                model = ServingModel(name, str(found.version), found.run_id, threshold)
    if problems:
        raise BacktestRejected("; ".join(problems))

    if model is not None:
        tags = mlflow_client.get_run(model.run_id).data.tags if model.run_id else {}
        trained = (tags.get("window.train_start"), tags.get("window.train_end"))
        if all(trained) and _overlap(tuple(map(dt.date.fromisoformat, trained)), (start, end)):  # type: ignore[arg-type]
            warnings.append(f"version {model.version} was trained on {trained[0]}..{trained[1]}, which overlaps the "
                            f"window: those days are in-sample")
    backtest_id = request.backtest_id or (
        f"v{model.version}_{start}_{end}" if model is not None
        else f"window_{windows.train_start}_{windows.train_end}_{start}_{end}_{train_key[:8]}")  # type: ignore[union-attr,index]
    return Plan(start, end, days, left_out, backtest_id, model, windows, train_key, warnings)


# The model of a training window -------------------------------------------------------------

def trained_model(lake: Lake, request: BacktestRequest, plan: Plan, settings: "Settings",
                  mlflow_client: "MlflowClient") -> tuple["ServingModel", dict[str, Any]]:
    """The version trained on the plan's windows for this request: reused when registered before, else
    trained by jobs.train and tagged; `challenger` is put back as it was (module docstring, step 1)."""
    from jobs.registry import CHALLENGER, alias_version
    from jobs.score import ServingModel
    from jobs.train import TrainRequest, train_candidate

    name, defaults = settings.mlflow.model_name, settings.training
    for found in mlflow_client.search_model_versions(f"name = '{name}'"):
        if (found.tags or {}).get("backtest_train_key") == plan.train_key and found.status in (None, "READY"):
            log.info("reusing %s version %s, trained before for the same request (key %s)", name, found.version,
                     plan.train_key)
            return (ServingModel(name, str(found.version), found.run_id, defaults.decision_threshold),
                    {"reused": True, "version": str(found.version), "run_id": found.run_id})
    train_request = TrainRequest(
        plan.windows, request.family or defaults.family, defaults.epochs, defaults.batch_size,  # type: ignore[arg-type]
        defaults.learning_rate, defaults.seed if request.seed is None else request.seed, defaults.use_gpu,
        reason=f"backtest {plan.backtest_id} (not promoted){': ' + request.reason if request.reason else ''}")
    challenger = alias_version(mlflow_client, name, CHALLENGER)
    try:
        result = train_candidate(train_request, settings=settings, lake=lake)
    finally:
        if alias_version(mlflow_client, name, CHALLENGER) != challenger:
            if challenger is None:
                mlflow_client.delete_registered_model_alias(name, CHALLENGER)
            else:
                mlflow_client.set_registered_model_alias(name, CHALLENGER, challenger)
            log.info("%s alias put back to %s: a backtest model is never a candidate", CHALLENGER, challenger)
    version = result["model_version"]
    for key, value in (("purpose", "backtest"), ("backtest_train_key", plan.train_key),
                       ("backtest_id", plan.backtest_id)):
        mlflow_client.set_model_version_tag(name, version, key, value)
    return (ServingModel(name, version, result["run_id"], defaults.decision_threshold),
            {"reused": False, **{k: result[k] for k in ("run_id", "model_version", "set_id", "valid_auc", "rows")}})


# Comparing ------------------------------------------------------------------------------------

def read_labels(spark: "SparkSession", lake: Lake, days: Sequence[str], key: Sequence[str]) -> "pd.DataFrame":
    """The flight key and `is_delayed` of the days' outcomes, by jobs.training_set's label rule (null: cancelled)."""
    import pyarrow as pa

    from jobs.training_set import label_frame

    outcomes = [lake.read_table(raw_key("flights", ds), [*key, "arr_delay"])[0] for ds in days]
    return label_frame(spark, pa.concat_tables(outcomes, promote_options="default")).toPandas()


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


# Reports --------------------------------------------------------------------------------------


def render_html(summary: dict[str, Any]) -> str:
    """A self-contained page: what was backtested, and the table of days and totals."""
    from jobs.reports import render_page

    return render_page("backtest.html.j2", summary=summary, generated_at=summary["generated_at"])


def render_chart(summary: dict[str, Any]) -> bytes:
    """PNG: daily ROC AUC of the backtested model and of what was served."""
    from matplotlib.dates import DateFormatter, DayLocator
    from matplotlib.figure import Figure

    days = [dt.date.fromisoformat(d["ds"]) for d in summary["days"]]
    figure = Figure(figsize=(10, 4), dpi=100)
    axes = figure.subplots()
    for side, label, style in (("backtest", f"backtest v{summary['model']['version']}", "o-"),
                               ("served", "served", "s--")):
        values = [(d.get(side) or {}).get("roc_auc") for d in summary["days"]]
        axes.plot(days, [float("nan") if v is None else v for v in values],
                  style if len(days) <= 62 else style[1:], label=label)  # markers hide a long window's line
    axes.xaxis.set_major_locator(DayLocator(interval=max(1, len(days) // 12)))
    axes.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
    axes.set_ylabel("ROC AUC")
    axes.set_title(f"Backtest {summary['id']}: daily ROC AUC")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


# The run --------------------------------------------------------------------------------------

def run_backtest(lake: Lake, request: "BacktestRequest | dict[str, Any]", settings: "Settings | None" = None, *,
                 spark: "SparkSession | None" = None, mlflow_client: "MlflowClient | None" = None) -> dict[str, Any]:
    """Steps 1-4 of the module docstring; returns the summary written to `backtest.json`."""
    import mlflow
    import pandas as pd

    from jobs.features import load_feature_schema
    from jobs.registry import client
    from jobs.score import ChampionUnusable, score_with_model
    from jobs.settings import get_settings
    from jobs.spark import spark_session

    if isinstance(request, dict):
        request = BacktestRequest.from_json(request)
    settings = settings or get_settings()
    mlflow_client = mlflow_client or client(settings.mlflow.tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    plan = check_request(lake, request, settings, mlflow_client)
    training = None
    if plan.model is None:
        plan.model, training = trained_model(lake, request, plan, settings, mlflow_client)
    model = plan.model
    log.info("backtest %s: %s version %s over %s..%s (%d day(s) with features and outcomes)", plan.backtest_id,
             model.name, model.version, plan.start, plan.end, len(plan.days))
    for ds, why in plan.left_out.items():
        log.warning("%s left out: %s", ds, why)

    spark = spark or spark_session("backtest", settings.spark)
    key = list(load_feature_schema(settings.features.schema_path).key)
    try:
        scored = score_with_model(lake, model, plan.days, settings=settings, spark=spark,
                                  key_of=lambda ds: backtest_predictions_key(plan.backtest_id, ds))
    except ChampionUnusable as exc:
        raise BacktestRejected(f"{model.name} version {model.version} (run {model.run_id}) cannot be loaded: "
                               f"{exc.__cause__ or exc}") from exc
    backtest = pd.concat([lake.read_partition(backtest_predictions_key(plan.backtest_id, r.ds)) for r in scored],
                         ignore_index=True)
    served, served_days = read_served(lake, plan.days, key)
    per_day, totals = compare(backtest, read_labels(spark, lake, plan.days, key), served, key, served_days,
                              model.threshold)

    tags = mlflow_client.get_run(model.run_id).data.tags if model.run_id else {}
    summary = {
        "id": plan.backtest_id, "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "request": request.to_json(),
        "model": {"name": model.name, "version": model.version, "run_id": model.run_id, "uri": model.uri,
                  "source": ("trained" if training else f"version {request.version}" if request.version
                             else f"alias {request.alias or DEFAULT_ALIAS}"),
                  "family": tags.get("family"),
                  "training_window": {k.removeprefix("window."): v for k, v in tags.items() if k.startswith("window.")}},
        "training": training, "window": {"start": plan.start.isoformat(), "end": plan.end.isoformat()},
        "threshold": model.threshold, "days": per_day, "totals": totals, "left_out": plan.left_out,
        "warnings": plan.warnings,
        "outputs": {name: lake.uri(backtest_key(plan.backtest_id, name))
                    for name in ("backtest.json", "backtest.html", "backtest.png")},
        "predictions_prefix": lake.uri(backtest_key(plan.backtest_id, "predictions")),
    }
    lake.write_bytes(backtest_key(plan.backtest_id, "backtest.png"), render_chart(summary))
    lake.write_text(backtest_key(plan.backtest_id, "backtest.html"), render_html(summary))
    lake.write_json(backtest_key(plan.backtest_id, "backtest.json"), summary)
    log.info("backtest %s: ROC AUC %s backtested vs %s served over %d flights -> %s", plan.backtest_id,
             num(totals["backtest"] and totals["backtest"]["roc_auc"], 4),
             num(totals["served"] and totals["served"]["roc_auc"], 4), totals["rows"],
             summary["outputs"]["backtest.html"])
    return summary


def result_line(summary: dict[str, Any]) -> dict[str, Any]:
    """The small STEP_RESULT of a backtest: references and headline numbers, never data."""
    totals = summary["totals"]
    return {"backtest_id": summary["id"], "model_version": summary["model"]["version"],
            "model_run_id": summary["model"]["run_id"], "trained": summary["training"] is not None,
            "window": [summary["window"]["start"], summary["window"]["end"]], "days": totals["days"],
            "rows": totals["rows"], "cancelled": totals["cancelled"],
            "backtest_roc_auc": (totals["backtest"] or {}).get("roc_auc"),
            "served_roc_auc": (totals["served"] or {}).get("roc_auc"),
            "json_uri": summary["outputs"]["backtest.json"], "report_uri": summary["outputs"]["backtest.html"],
            "report_key": backtest_key(summary["id"], "backtest.html"), "warnings": summary["warnings"]}


EXAMPLES = """examples:
  python -m jobs.backtest --version 3 --start 2013-03-01 --end 2013-03-31
  python -m jobs.backtest --alias champion                  # the last 14 labelled days
  python -m jobs.backtest --train-start 2013-01-01 --train-end 2013-01-31 --start 2013-02-01 --end 2013-02-28

Outputs: reports/backtest/{id}/backtest.json, backtest.html, backtest.png (and predictions/).
Exit codes: 0 done; 3 rejected (every problem named); 4 nothing to backtest; 1 other errors.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.backtest", description=__doc__.split("\n\n")[0],
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    day = dt.date.fromisoformat
    parser.add_argument("--start", type=day, help="first flight date of the window (YYYY-MM-DD)")
    parser.add_argument("--end", type=day, help="last flight date of the window (default: 14 days)")
    parser.add_argument("--version", help="registered model version to backtest")
    parser.add_argument("--alias", help=f"backtest the version an alias names now (default {DEFAULT_ALIAS})")
    parser.add_argument("--train-start", type=day, help="train a model on this window first (not promoted)")
    parser.add_argument("--train-end", type=day, help="last flight date of the training window")
    parser.add_argument("--holdout-start", type=day, help="training's holdout (default: the days after train-end)")
    parser.add_argument("--holdout-end", type=day)
    parser.add_argument("--family", choices=("torch_mlp", "sklearn_hgb"), help="model family when training")
    parser.add_argument("--seed", type=int, help="training seed (default: training.seed)")
    parser.add_argument("--id", dest="backtest_id", help="report id (default: from the request)")
    parser.add_argument("--reason", default="", help="why (recorded on a trained version)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from jobs.registry import MlflowUnreachable
    from jobs.training_set import TrainingSetError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    request = BacktestRequest(**{k: v for k, v in vars(args).items() if v not in (None, "")})
    try:
        summary = run_backtest(Lake.from_settings(), request)
    except NothingToBacktest as exc:
        print(f"{SKIP_PREFIX}{exc}", flush=True)
        record_rejection(str(exc))
        return EXIT_SKIPPED
    except (BacktestRejected, TrainingSetError) as exc:
        print(f"ERROR jobs.backtest rejected: {exc}", file=sys.stderr)
        record_rejection(str(exc))
        return EXIT_REJECTED
    except MlflowUnreachable as exc:
        print(f"ERROR jobs.backtest: {exc}", file=sys.stderr)
        return 1
    emit_result(result_line(summary))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
