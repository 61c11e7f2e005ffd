"""Score the flights of flight dates with the serving model, in Spark.

    python -m jobs.score --ds 2013-03-01 [--days N]
    python -m jobs.score --ds 2013-03-01 --catch-up
    python -m jobs.score --ahead-of 2013-07-15

1. `models:/flight_delay@champion` is resolved once, at the start, to a version: every date
   of the run is scored by that version even if the alias moves meanwhile.
2. The features of each date (`features/flights/date={ds}/`) go through
   `mlflow.pyfunc.spark_udf` (env manager `local`: the image or venv carries the model's
   dependencies, pinned in its requirements), which feeds the pyfunc raw feature rows; the
   model does its own preprocessing.
3. `predictions/flight_delay/date={ds}/` is replaced atomically (jobs.lake): the flight key,
   `flight_date`, `probability`, `predicted_delayed` (probability >= the policy's
   `training.decision_threshold`), `model_version`, `model_run_id` and `scored_at`; the
   manifest records the model and the features partition it read. A rerun replaces the
   partition.

`--ahead-of X` rescores the days scored ahead of monitoring's decision of day X: the dates
with features after X and after the last day monitoring judged (`reports/drift/{ds}/summary.json`).
A catch-up or a replay builds and scores days before monitoring has judged the day before them;
when monitoring of X starts a training that promotes, delay_model_training runs this, so that
every day from X+1 on is served by the new champion, as it would have been live. Live there are
none: the features of X+1 are built at the start of X+1, after the training.

`--catch-up` (the scheduler's run of one date D, created by D's features): D, unless its
predictions already come from the champion on D's current features write (left in place, and
the log says so), and every later date whose features are there and that was never
scored, in the same Spark pass. In a catch-up (a backfill of features, a replay's stretch) the
first run scores the days that are ready and the runs of the later days find them scored and
skip in about a second, instead of each paying its own Spark pass. A later date already scored
is never touched here (its served predictions stand); a rebuilt features partition gets its own
run, which rescores it.

Nothing to score is a skip, not a failure (exit 4, jobs/results.py): no champion yet (the
first training has not promoted one), or no features partition for the date (the message
names it). A range scores the dates that have features and names the others. A champion
that cannot be loaded (its version deleted, its artifact missing) is a rejection (exit 3)
naming the version: no retry fixes it, a rollback or a promotion does.

stdout: one `STEP_RESULT {"ds", "predictions_uri", "rows", "model_version", "model_run_id",
"predicted_delayed_rate", "mean_probability", "status"}` per date scored.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.cli import step_parser
from jobs.lake import Lake, PartitionNotFound, partition_key
from jobs.results import EXIT_OK, EXIT_REJECTED, EXIT_SKIPPED, SKIP_PREFIX, emit_result, record_rejection
from jobs.serving import (ChampionUnusable, NothingToScore, ServingModel, model_inputs, resolve_champion,
                          serving_udf)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from pyspark.sql import DataFrame, SparkSession

    from jobs.settings import Settings

log = logging.getLogger("jobs.score")

PREDICTIONS_DATASET = "flight_delay"
PROBABILITY = "probability"
PREDICTED = "predicted_delayed"
STAMP_COLUMNS = ("model_version", "model_run_id", "scored_at")


def predictions_key(ds: str) -> str:
    return partition_key("predictions", PREDICTIONS_DATASET, ds)


def score_frame(features: "DataFrame", udf: Any, inputs: Sequence[tuple[str, str]], key: Sequence[str],
                model: ServingModel, scored_at: dt.datetime) -> "DataFrame":
    """Predictions of a features DataFrame: the key, the probability, the label and the model stamp."""
    from pyspark.sql import functions as F

    missing = [name for name, _ in inputs if name not in features.columns]
    if missing:
        raise ValueError(f"the features lack model input columns {missing} (feature schema vs model "
                         f"version {model.version})")
    # The signature's numbers are doubles: Spark's integer columns are cast, as the pyfunc would receive them.
    cast = [F.col(name).cast("double").alias(name) if kind in ("double", "float", "long", "integer")
            else F.col(name) for name, kind in inputs]
    probability = udf(F.struct(*cast))
    return (features
            .withColumn(PROBABILITY, probability)
            .select(*key, "flight_date", PROBABILITY,
                    (F.col(PROBABILITY) >= F.lit(model.threshold)).alias(PREDICTED),
                    F.lit(model.version).alias("model_version"), F.lit(model.run_id).alias("model_run_id"),
                    F.lit(scored_at).cast("timestamp").alias("scored_at")))


@dataclass
class ScoreResult:
    ds: str
    predictions_uri: str
    rows: int
    model_version: str
    model_run_id: str
    predicted_delayed_rate: float | None
    mean_probability: float | None
    seconds: float
    status: str = "written"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _summary(frame: "Any") -> tuple[float | None, float | None]:
    if len(frame) == 0:
        return None, None
    return round(float(frame[PREDICTED].mean()), 6), round(float(frame[PROBABILITY].mean()), 6)


def scoring_tasks(rows: int, rows_per_task: int) -> int:
    """Spark tasks for scoring `rows` rows: enough that each holds at most `rows_per_task`."""
    return max(1, math.ceil(rows / rows_per_task))


def scoring_frame(spark: "SparkSession", table: "Any", rows_per_task: int) -> "DataFrame":
    """The features to score as a DataFrame of scoring_tasks(rows, rows_per_task) partitions.

    createDataFrame makes a partition per Arrow batch (10,000 rows), and in local mode
    spark_udf loads the model again in every task: fewer, larger tasks, by a coalesce (no
    shuffle; bench/bench_scoring.py measured repartition(2) no faster).
    """
    return spark.createDataFrame(table).coalesce(scoring_tasks(table.num_rows, rows_per_task))


def dates_ahead(lake: Lake, decided_on: dt.date) -> list[dt.date]:
    """The flight dates with features after `decided_on` (monitoring's day that started a training) and after
    the last monitored day (a day already judged keeps the scores it was judged on)."""
    from jobs.features import features_key
    from jobs.monitor import last_monitored_date

    after = max(decided_on, last_monitored_date(lake) or decided_on)
    return sorted(day for day in lake.partition_dates(_prefix(features_key)) if day > after)


def _prefix(key_of: Callable[[str], str]) -> str:
    """The folder of a dataset's date partitions (`features/flights/`), from its key function."""
    return key_of("").rsplit("date=", 1)[0]


def scored_from(lake: Lake, ds: str) -> tuple[str, str] | None:
    """(model version, features write id) the predictions of `ds` were made from; None when never scored."""
    try:
        meta = lake.read_manifest(predictions_key(ds)).get("metadata", {})
    except PartitionNotFound:
        return None
    return str(meta.get("model_version")), str((meta.get("features") or {}).get("write_id"))


def catch_up_dates(lake: Lake, ds: dt.date, model: ServingModel) -> tuple[list[dt.date], str | None]:
    """The dates a `--catch-up` run of `ds` scores with `model`, and why `ds` is left alone (None: it is scored).

    `ds`, unless its predictions come from `model` on its current features write; then every later date
    with features and no predictions at all (scored ahead: their own runs will find them done)."""
    from jobs.features import features_key

    left_alone = None
    dates = [ds]
    try:
        features_write = str(lake.read_manifest(features_key(ds.isoformat()))["write_id"])
    except PartitionNotFound:
        features_write = None  # score_with_model names the missing partition
    if features_write and scored_from(lake, ds.isoformat()) == (model.version, features_write):
        left_alone = (f"the predictions of {ds} already come from version {model.version} on its features write "
                      f"{features_write} (scored ahead by an earlier run)")
        dates = []
    scored = lake.partition_dates(_prefix(predictions_key))
    dates += sorted(day for day in lake.partition_dates(_prefix(features_key)) if day > ds and day not in scored)
    return dates, left_alone


def score_catch_up(lake: Lake, ds: dt.date, *, settings: "Settings | None" = None,
                   spark: "SparkSession | None" = None, mlflow_client: "MlflowClient | None" = None) -> list[ScoreResult]:
    """`--catch-up`: score `ds` (unless already scored by the champion on its features) and the later dates
    never scored, in one pass with the champion resolved once; NothingToScore when nothing is left to do."""
    settings, model = _champion(settings, mlflow_client)
    dates, left_alone = catch_up_dates(lake, ds, model)
    if not dates:
        raise NothingToScore(f"{left_alone}; no later date waits to be scored")
    if left_alone:
        log.info("%s: kept", left_alone)
    if dates[-1] > ds:
        log.info("catching up: %d date(s) after %s have features and no predictions yet (%s..%s): scored in this "
                 "pass with version %s", sum(day > ds for day in dates), ds, dates[0 if left_alone else 1],
                 dates[-1], model.version)
    return score_with_model(lake, model, [day.isoformat() for day in dates], settings=settings, spark=spark)


def score_dates(lake: Lake, first: dt.date, days: int = 1, *, settings: "Settings | None" = None,
                spark: "SparkSession | None" = None, mlflow_client: "MlflowClient | None" = None) -> list[ScoreResult]:
    """Score flight dates first .. first+days-1 with the champion (see the module docstring)."""
    return score_champion(lake, [(first + dt.timedelta(days=i)).isoformat() for i in range(days)], settings=settings,
                          spark=spark, mlflow_client=mlflow_client)


def score_ahead(lake: Lake, decided_on: dt.date, *, settings: "Settings | None" = None,
                spark: "SparkSession | None" = None, mlflow_client: "MlflowClient | None" = None) -> list[ScoreResult]:
    """Rescore with the champion the dates scored ahead of monitoring's decision of `decided_on` (`--ahead-of`)."""
    from jobs.monitor import last_monitored_date

    dates = dates_ahead(lake, decided_on)
    if not dates:
        raise NothingToScore(f"no day after {decided_on} is scored ahead of monitoring (last monitored: "
                             f"{last_monitored_date(lake) or 'none yet'}): nothing to rescore")
    log.info("rescoring %d date(s) scored ahead of monitoring: %s..%s", len(dates), dates[0], dates[-1])
    return score_champion(lake, [day.isoformat() for day in dates], settings=settings, spark=spark,
                          mlflow_client=mlflow_client)


def score_champion(lake: Lake, dates: Sequence[str], *, settings: "Settings | None" = None,
                   spark: "SparkSession | None" = None, mlflow_client: "MlflowClient | None" = None) -> list[ScoreResult]:
    """Score `dates` with the champion, resolved once."""
    settings, model = _champion(settings, mlflow_client)
    return score_with_model(lake, model, dates, settings=settings, spark=spark)


def _champion(settings: "Settings | None", mlflow_client: "MlflowClient | None") -> tuple["Settings", ServingModel]:
    """The settings and the champion, resolved once (MLflow's tracking URI set for the UDF)."""
    import mlflow

    from jobs.registry import client
    from jobs.settings import get_settings

    settings = settings or get_settings()
    mlflow_client = mlflow_client or client(settings.mlflow.tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    model = resolve_champion(mlflow_client, settings.mlflow.model_name, settings.training.decision_threshold)
    log.info("serving model %s (run %s), threshold %.3f", model.uri, model.run_id, model.threshold)
    return settings, model


def score_with_model(lake: Lake, model: ServingModel, dates: Sequence[str], *, settings: "Settings",
                     spark: "SparkSession | None" = None,
                     key_of: Callable[[str], str] = predictions_key) -> list[ScoreResult]:
    """Score the flight dates `dates` (YYYY-MM-DD) with `model` into the partitions `key_of(ds)`.

    Production scoring writes `predictions_key(ds)`; a backtest writes under its own report
    (jobs.backtest), with the same features, UDF, casts and stamps. MLflow's tracking URI
    must already point at the model's registry.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from jobs.features import features_key, load_feature_schema
    from jobs.spark import step_session

    tables, manifests, missing = [], {}, []
    for ds in dates:
        try:
            table, manifest = lake.read_table(features_key(ds))
        except PartitionNotFound:
            missing.append(lake.uri(features_key(ds)))
            continue
        tables.append(table)
        manifests[ds] = manifest
    for uri in missing:
        log.warning("no features partition %s: that date is not scored", uri)
    if not manifests:
        raise NothingToScore(f"no features partition to score: {', '.join(missing)}")

    started = time.perf_counter()
    with step_session("score", settings.spark, spark, python_workers=True) as spark:
        log.info("Spark session ready in %.1fs", time.perf_counter() - started)
        started = time.perf_counter()
        udf = serving_udf(spark, model)
        inputs = model_inputs(model.uri)
        key = list(load_feature_schema(settings.features.schema_path).key)
        scored_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
        table = pa.concat_tables(tables, promote_options="default")
        tasks = scoring_tasks(table.num_rows, settings.scoring.rows_per_task)
        log.info("scoring %d rows of %d dates in %d Spark task(s)", table.num_rows, len(manifests), tasks)
        features = scoring_frame(spark, table, settings.scoring.rows_per_task)
        # Each day's partition is written in flight-key order, whatever the features' order.
        predictions = score_frame(features, udf, inputs, key, model, scored_at).toArrow()
    predictions = predictions.sort_by([(column, "ascending") for column in key])

    results = []
    per_day = (time.perf_counter() - started) / len(manifests)
    for ds, manifest in manifests.items():
        day = predictions.filter(pc.equal(predictions["flight_date"], dt.date.fromisoformat(ds))).to_pandas()
        metadata = {"ds": ds, "model_name": model.name, "model_version": model.version, "model_run_id": model.run_id,
                    "model_uri": model.uri, "threshold": model.threshold, "scored_at": scored_at.isoformat() + "Z",
                    "features": {"key": features_key(ds), "write_id": manifest["write_id"],
                                 "fingerprint": manifest.get("metadata", {}).get("fingerprint")}}
        partition = lake.write_partition(key_of(ds), day, metadata)
        rate, mean = _summary(day)
        log.info("predictions %s: %d flights by version %s (%.1f%% predicted delayed) -> %s", ds, partition.rows,
                 model.version, 100 * (rate or 0.0), partition.uri)
        results.append(ScoreResult(ds, partition.uri, partition.rows, model.version, model.run_id, rate, mean,
                                   round(per_day, 3)))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = step_parser("jobs.score", __doc__.split("\n\n")[0], "--ds 2013-03-01", "--ds 2013-03-01 --days 31",
                         "--ds 2013-03-01 --catch-up", "--ahead-of 2013-07-15")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--ds", type=dt.date.fromisoformat, help="flight date, YYYY-MM-DD")
    which.add_argument("--ahead-of", type=dt.date.fromisoformat, metavar="X",
                       help="the dates with features after monitoring's day X and after the last monitored day "
                            "(a promotion in a catch-up)")
    parser.add_argument("--days", type=int, default=1, help="consecutive flight dates from --ds (default 1)")
    parser.add_argument("--catch-up", action="store_true",
                        help="with --ds D: keep D if the champion already scored its features, and score the later "
                             "dates with features never scored, in the same pass (the scheduler's runs)")
    return parser


def _dates_of(args: argparse.Namespace, lake: Lake) -> list[dt.date]:
    if args.ahead_of:
        return dates_ahead(lake, args.ahead_of)
    if args.catch_up:  # what it may have written: D and any later date with features
        from jobs.features import features_key

        return [args.ds, *sorted(day for day in lake.partition_dates(_prefix(features_key)) if day > args.ds)]
    return [args.ds + dt.timedelta(days=offset) for offset in range(args.days)]


def lake_results(argv: Sequence[str], since: dt.datetime) -> list[dict[str, Any]]:
    """What a run with these arguments wrote (for runners that cannot read its stdout): partitions written since `since`."""
    args = build_parser().parse_args(list(argv))
    lake = Lake.from_settings()
    results = []
    for day in _dates_of(args, lake):
        ds = day.isoformat()
        try:
            manifest = lake.read_manifest(predictions_key(ds))
        except PartitionNotFound:
            continue
        if dt.datetime.fromisoformat(manifest["written_at"]) < since:
            continue
        meta = manifest.get("metadata", {})
        results.append(ScoreResult(ds, lake.uri(predictions_key(ds)), manifest["rows"], meta.get("model_version", ""),
                                   meta.get("model_run_id", ""), None, None, 0.0).to_json())
    return results


def main(argv: list[str] | None = None) -> int:
    from jobs.registry import MlflowUnreachable

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    if (args.ahead_of or args.catch_up) and args.days != 1:
        parser.error("--days goes with --ds alone: --ahead-of and --catch-up find their dates themselves")
    if args.catch_up and not args.ds:
        parser.error("--catch-up goes with --ds (the run's own date)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    lake = Lake.from_settings()
    try:
        if args.ahead_of:
            results = score_ahead(lake, args.ahead_of)
        elif args.catch_up:
            results = score_catch_up(lake, args.ds)
        else:
            results = score_dates(lake, args.ds, args.days)
    except NothingToScore as exc:
        print(f"{SKIP_PREFIX}{exc}", flush=True)
        record_rejection(str(exc))
        return EXIT_SKIPPED
    except ChampionUnusable as exc:
        print(f"ERROR jobs.score rejected: {exc}", file=sys.stderr)
        record_rejection(str(exc))
        return EXIT_REJECTED
    except MlflowUnreachable as exc:
        print(f"ERROR jobs.score: {exc}", file=sys.stderr)
        return 1
    for result in results:
        emit_result(result.to_json())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
