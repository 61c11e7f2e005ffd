"""The feature step's CLI: build and write the features of a range of dates, skipping dates whose inputs are unchanged.

    python -m jobs.features --ds 2013-02-10 [--days N] [--lookback-days N] [--force]

Skip what has not changed: before any data is read, the fingerprint each date would get
is worked out from the input manifests alone (milliseconds). A date whose partition
already records it is left in place and reported `"status": "unchanged"`; if every date
is unchanged no Spark session starts at all. `--force` rebuilds regardless. A
redelivered raw partition (new write_id), a change of this package's code, of the schema
or of a feature setting all change the fingerprint.

A range of dates (`--days`, `compute_features`) is read once and computed in one Spark
pass (month-sized passes for a longer one), then written one partition per date, so a
backfill pays the JVM start and warm-up once, not per day.

`--lookback-days N` (default 28, the longest window) reads N days of outcomes; a shorter
lookback truncates the windows, which `history_days_available` and the metadata show.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Sequence

from jobs.cli import step_parser
from jobs.features.inputs import FeatureInputError, read_inputs, read_lineage, to_spark
from jobs.features.output import current_fingerprint, features_key, partition_metadata, write_features
from jobs.features.params import FeatureParams
from jobs.features.schema import FeatureSchema, load_feature_schema
from jobs.features.transforms import HISTORY_WINDOWS, build_features
from jobs.lake import Lake
from jobs.results import EXIT_OK, EXIT_USAGE, emit_result

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.settings import Settings

log = logging.getLogger("jobs.features")  # the step's one logger, whichever module logs

# The most dates one Spark pass builds; a longer range runs as several passes in one session.
RANGE_PASS_DAYS = 31


@dataclass
class FeatureResult:
    ds: str
    status: Literal["written", "unchanged"]  # unchanged: same fingerprint as the partition in place, not rewritten
    features_uri: str
    rows: int
    fingerprint: str
    missing_inputs: list[str]
    outcome_days_read: int
    outcome_days_missing: int
    seconds: float  # read + compute + write per date (a range shares one pass), without the session start

    @classmethod
    def from_metadata(cls, ds: str, status: Literal["written", "unchanged"], features_uri: str, rows: int,
                      fingerprint: str, metadata: dict[str, Any], seconds: float = 0.0) -> "FeatureResult":
        """The result of a date from its partition's metadata (what `partition_metadata` recorded)."""
        return cls(ds, status, features_uri, rows, fingerprint, metadata.get("missing_inputs", []),
                   metadata.get("outcome_days_read", 0), metadata.get("outcome_days_missing", 0), seconds)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compute_features(
    lake: Lake,
    first: dt.date,
    days: int = 1,
    *,
    settings: "Settings | None" = None,
    spark: "SparkSession | None" = None,
    lookback_days: int | None = None,
    force: bool = False,
) -> list[FeatureResult]:
    """Build and write the features of flight dates first .. first+days-1 in one Spark pass.

    A date whose partition already records the fingerprint its inputs would give now is
    left as it is (status "unchanged") unless `force`; when every date is unchanged no
    Spark session is started. Without `spark`, the session it starts is released at the
    end if it is a Spark Connect one (jobs.spark.release_session). Raises FeatureInputError
    when a schedule partition or the planes table is missing.
    """
    from jobs.settings import get_settings

    if days < 1:
        raise ValueError("days must be at least 1")
    settings = settings or get_settings()
    lookback_days = max(HISTORY_WINDOWS) if lookback_days is None else lookback_days
    if lookback_days < 0:
        raise ValueError("lookback_days must be >= 0")
    schema = load_feature_schema(settings.features.schema_path)
    params = FeatureParams.from_settings(settings)
    earliest = settings.data.first_flight_date
    dates = [first + dt.timedelta(days=i) for i in range(days)]

    # Fingerprints from the manifests alone: a missing input fails here, before Spark.
    lineage = read_lineage(lake, dates[0], dates[-1], lookback_days, earliest)
    planned = {d: partition_metadata(d.isoformat(), lineage, lookback_days, params, schema, earliest)["fingerprint"]
               for d in dates}
    results: dict[dt.date, FeatureResult] = {}
    if not force:
        for day in dates:
            ds = day.isoformat()
            if current_fingerprint(lake, ds) == planned[day]:
                partition = lake.partition(features_key(ds))
                log.info("features %s unchanged (fingerprint %s): kept %s", ds, planned[day][:12], partition.uri)
                results[day] = FeatureResult.from_metadata(ds, "unchanged", partition.uri, partition.rows,
                                                           planned[day], partition.metadata)
    todo = [d for d in dates if d not in results]
    if not todo:
        return [results[d] for d in dates]
    from jobs.spark import release_session, spark_session

    own_session = spark is None
    if own_session:
        session_started = time.perf_counter()
        spark = spark_session("features", settings.spark)
        log.info("Spark session started in %.1fs", time.perf_counter() - session_started)
    try:
        # A long range goes through in month-sized passes of the same session: each pass collects
        # its features to the driver to write them, which must fit a default (1g) driver.
        for start in range(0, len(todo), RANGE_PASS_DAYS):
            for result in _build(lake, todo[start:start + RANGE_PASS_DAYS], settings, spark, lookback_days, params,
                                 schema):
                results[dt.date.fromisoformat(result.ds)] = result
    finally:
        if own_session:
            release_session(spark)
    return [results[d] for d in dates]


def _build(lake: Lake, todo: list[dt.date], settings: "Settings", spark: "SparkSession", lookback_days: int,
           params: FeatureParams, schema: FeatureSchema) -> list[FeatureResult]:
    """Read the inputs of the span of `todo` once, compute it in one Spark pass, write the dates of `todo`.

    Each result's `seconds` is this pass's read, compute and write per date (the session start is not in it).
    """
    started = time.perf_counter()
    earliest = settings.data.first_flight_date
    inputs = read_inputs(lake, todo[0], todo[-1], lookback_days, earliest)
    for key in inputs.missing:
        level = logging.WARNING if key.startswith("raw/weather/") else logging.INFO
        log.log(level, "input %s is missing: %s", lake.uri(key),
                "no weather for that day's flights" if level == logging.WARNING else "skipped from the history")
    frames = to_spark(spark, inputs)
    features = build_features(frames["schedule"], frames["weather"], frames["outcomes"], frames["planes"], params,
                              schema)
    metadata = {d.isoformat(): partition_metadata(d.isoformat(), inputs, lookback_days, params, schema, earliest)
                for d in todo}
    written = write_features(lake, features, todo, metadata, schema)
    per_day = (time.perf_counter() - started) / len(todo)
    results = []
    for ds, partition in written.items():
        log.info("features %s: %d flights -> %s", ds, partition.rows, partition.uri)
        results.append(FeatureResult.from_metadata(ds, "written", partition.uri, partition.rows,
                                                   metadata[ds]["fingerprint"], metadata[ds], round(per_day, 3)))
    return results


def build_parser() -> argparse.ArgumentParser:
    import jobs.features

    parser = step_parser("jobs.features", jobs.features.__doc__.split("\n\n")[0], "--ds 2013-03-01",
                         "--ds 2013-03-01 --days 31")
    parser.add_argument("--ds", required=True, type=dt.date.fromisoformat, help="flight date, YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=1,
                        help="consecutive flight dates from --ds, built in one Spark pass (default 1)")
    longest = max(HISTORY_WINDOWS)
    parser.add_argument("--lookback-days", type=int, default=longest,
                        help=f"days of outcomes before each date to read (default {longest}, the longest window)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild dates whose partition already records the same input fingerprint")
    return parser


def lake_results(argv: Sequence[str], since: dt.datetime) -> list[dict[str, Any]]:
    """The results a run with these CLI arguments left in the lake (for runners that cannot read its stdout).

    A partition written at or after `since` counts as "written" by that run, an older one as "unchanged".
    """
    args = build_parser().parse_args(list(argv))
    lake = Lake.from_settings()
    results = []
    for offset in range(args.days):
        ds = (args.ds + dt.timedelta(days=offset)).isoformat()
        manifest = lake.read_manifest(features_key(ds))
        meta = manifest.get("metadata", {})
        written = dt.datetime.fromisoformat(manifest["written_at"]) >= since
        results.append(FeatureResult.from_metadata(ds, "written" if written else "unchanged",
                                                   lake.uri(features_key(ds)), manifest["rows"],
                                                   meta.get("fingerprint", ""), meta).to_json())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.days < 1:
        parser.error("--days must be at least 1")
    if args.lookback_days < 0:
        parser.error("--lookback-days must be >= 0")

    from jobs.settings import get_settings

    settings = get_settings()
    lake = Lake.from_settings(settings)
    try:
        results = compute_features(lake, args.ds, args.days, settings=settings, lookback_days=args.lookback_days,
                                   force=args.force)
    except FeatureInputError as exc:
        print(f"jobs.features: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for result in results:
        emit_result(result.to_json())
    return EXIT_OK
