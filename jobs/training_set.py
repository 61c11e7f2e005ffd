"""The training set of a training run: feature rows over a window joined to their labels, split by time.

    python -m jobs.training_set --train-start 2013-01-01 --train-end 2013-11-30 \
        --holdout-start 2013-12-01 --holdout-end 2013-12-31

Reads `features/flights/date=D` for every D of the two windows and the outcomes of the same
dates (`raw/flights/date=D`, the labels: `is_delayed` = arr_delay >= 15 min, DESIGN.md),
joins them on the flight key (Arrow's hash join: both are read whole, every row goes to the
trainer), and writes

    training/flight_delay/set={set_id}/split=train/    (and split=holdout/)

each a lake partition (Parquet + manifest) whose metadata is the set's lineage: the feature
and label partitions used with their manifest write ids, the dates left out and why, rows,
positives, cancelled flights excluded, and a content hash of the rows. `set_id` is a hash of
the windows and of every input's write id: the same inputs give the same set, which is then
reused, not rebuilt; a redelivered or rebuilt partition gives a new set.

Cancelled and diverted flights have no arrival delay: no label. They are excluded and
counted (`cancelled_excluded`). A date without a features partition or without its outcomes
(not yet arrived) is left out and named in the metadata; a window left with no labelled row
at all, or with a single class, is an error naming the window (exit 3: no retry helps).

One line on stdout (jobs/results.py):
    STEP_RESULT {"set_id", "train_uri", "holdout_uri", "rows": {"train", "holdout"},
                 "positives": {...}, "dates_missing": [...], "content_sha256": {...}}
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from jobs.cli import step_parser
from jobs.features import features_key, load_feature_schema
from jobs.feeds import DELAYED_MINUTES, FLIGHT_KEY, LABEL
from jobs.lake import Lake, PartitionNotFound, raw_key
from jobs.results import EXIT_OK, EXIT_REJECTED, emit_result

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from jobs.features import FeatureSchema
    from jobs.settings import Settings

log = logging.getLogger("jobs.training_set")

SPLITS = ("train", "holdout")


class TrainingSetError(ValueError):
    """The windows give no usable training set (no rows, no labels, one class): names the window."""


@dataclass(frozen=True)
class Windows:
    train_start: dt.date
    train_end: dt.date
    holdout_start: dt.date
    holdout_end: dt.date

    def __post_init__(self) -> None:
        problems = []
        if self.train_end < self.train_start:
            problems.append(f"training window ends ({self.train_end}) before it starts ({self.train_start})")
        if self.holdout_end < self.holdout_start:
            problems.append(f"holdout window ends ({self.holdout_end}) before it starts ({self.holdout_start})")
        if self.holdout_start <= self.train_end and self.train_start <= self.holdout_end:
            problems.append(f"holdout {self.holdout_start}..{self.holdout_end} overlaps training "
                            f"{self.train_start}..{self.train_end}")
        if problems:
            raise ValueError("; ".join(problems))

    def dates(self, split: str) -> list[dt.date]:
        first, last = ((self.train_start, self.train_end) if split == "train"
                       else (self.holdout_start, self.holdout_end))
        return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]

    def to_json(self) -> dict[str, str]:
        return {key: value.isoformat() for key, value in asdict(self).items()}

    def argv(self) -> list[str]:
        """The `python -m jobs.training_set` arguments of these windows (`add_window_arguments` reads them back)."""
        return [arg for key, value in self.to_json().items() for arg in (f"--{key.replace('_', '-')}", value)]


def last_labelled_date(lake: Lake, not_after: dt.date | None = None) -> dt.date | None:
    """The latest flight date with both a features partition and its outcomes (labels), optionally capped."""
    both = lake.partition_dates("features/flights/") & lake.partition_dates("raw/flights/")
    if not_after is not None:
        both = {d for d in both if d <= not_after}
    return max(both, default=None)


def resolve_windows(requested: dict[str, Any], last_labelled: dt.date | None, first_date: dt.date,
                    last_date: dt.date, holdout_days: int) -> Windows:
    """The windows of a training request; None fields take the defaults, every problem is named at once.

    Defaults: the holdout is the last `holdout_days` labelled days; training is everything
    labelled before it, from the first flight date (a growing window: measured here, it beats a
    sliding one-month window in 9 of 10 months).
    """
    problems: list[str] = []

    def date_of(name: str) -> dt.date | None:
        value = requested.get(name)
        if value in (None, ""):
            return None
        try:
            day = dt.date.fromisoformat(str(value)[:10])
        except ValueError:
            problems.append(f"{name} {value!r} is not a date (YYYY-MM-DD)")
            return None
        if not first_date <= day <= last_date:
            problems.append(f"{name} {day} is outside the data ({first_date}..{last_date})")
        return day

    given = {name: date_of(name) for name in ("train_start", "train_end", "holdout_start", "holdout_end")}
    if problems:
        raise ValueError("; ".join(problems))
    holdout_end = given["holdout_end"] or last_labelled
    if holdout_end is None:
        raise ValueError("no labelled day in the lake yet (features and outcomes): nothing to train or evaluate on")
    holdout_start = given["holdout_start"] or holdout_end - dt.timedelta(days=holdout_days - 1)
    train_end = given["train_end"] or holdout_start - dt.timedelta(days=1)
    train_start = given["train_start"] or first_date
    return Windows(train_start, train_end, holdout_start, holdout_end)


def training_set_key(set_id: str, split: str) -> str:
    return f"training/flight_delay/set={set_id}/split={split}"


@dataclass
class SplitInputs:
    features: dict[str, str]  # features partition key -> write_id
    labels: dict[str, str]  # raw/flights partition key -> write_id
    missing: dict[str, str]  # date -> why it is left out


def plan_inputs(lake: Lake, windows: Windows) -> dict[str, SplitInputs]:
    """Which feature and label partitions each split reads (manifests only)."""
    plan = {}
    for split in SPLITS:
        inputs = SplitInputs({}, {}, {})
        for day in windows.dates(split):
            ds = day.isoformat()
            try:
                feature_id = lake.read_manifest(features_key(ds))["write_id"]
            except PartitionNotFound:
                inputs.missing[ds] = f"no features partition {features_key(ds)}"
                continue
            try:
                label_id = lake.read_manifest(raw_key("flights", ds))["write_id"]
            except PartitionNotFound:
                inputs.missing[ds] = f"no outcomes yet ({raw_key('flights', ds)})"
                continue
            inputs.features[features_key(ds)] = feature_id
            inputs.labels[raw_key("flights", ds)] = label_id
        plan[split] = inputs
    return plan


def set_id_of(windows: Windows, plan: dict[str, SplitInputs], schema_sha256: str) -> str:
    identity = {"windows": windows.to_json(), "schema": schema_sha256, "delayed_minutes": DELAYED_MINUTES,
                "inputs": {split: [plan[split].features, plan[split].labels] for split in SPLITS}}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _read_all(lake: Lake, keys: list[str], columns: list[str] | None = None) -> "pa.Table | None":
    import pyarrow as pa

    tables = [lake.read_table(key, columns)[0] for key in keys]
    return pa.concat_tables(tables, promote_options="default") if tables else None


def label_table(outcomes: "pa.Table") -> "pa.Table":
    """Flight key + is_delayed (int32) from outcomes; cancelled/diverted flights (no arr_delay) get a null label."""
    import pyarrow as pa
    import pyarrow.compute as pc

    delayed = pc.cast(pc.greater_equal(outcomes["arr_delay"], DELAYED_MINUTES), pa.int32())  # null stays null
    return outcomes.select(list(FLIGHT_KEY)).append_column(LABEL, delayed)


def arrow_feature_schema(schema: "FeatureSchema") -> "pa.Schema":
    """The declared feature schema as Arrow types (dates as date32), as Spark hands them over."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema.spark_schema(), timezone="UTC")


def build_split(lake: Lake, inputs: SplitInputs) -> tuple["pd.DataFrame", int]:
    """Feature rows of the split with their label; (rows, cancelled flights excluded).

    A key join of two tables that are read whole into this process anyway (every row goes to the
    trainer), so it is Arrow's hash join here, not a Spark query: handed to a Spark Connect server,
    an 11-month set travelled there as a local relation and back as the result, and two at once
    exhausted its heap.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = load_feature_schema()
    features = _read_all(lake, sorted(inputs.features))
    outcomes = _read_all(lake, sorted(inputs.labels), [*FLIGHT_KEY, "arr_delay"])
    if features is None or outcomes is None:
        import pandas as pd

        return pd.DataFrame(columns=[*schema.names, LABEL]), 0
    arrow_schema = arrow_feature_schema(schema)
    features = features.select(list(schema.names)).cast(arrow_schema)
    labels = label_table(outcomes)
    key = list(schema.key)
    labels = labels.cast(pa.schema([*(arrow_schema.field(name) for name in key), labels.schema.field(LABEL)]))
    joined = features.join(labels, keys=key, join_type="left outer")
    unlabelled = joined[LABEL].null_count
    labelled = joined.filter(pc.is_valid(joined[LABEL])).select([*schema.names, LABEL])
    ordered = labelled.sort_by([(name, "ascending") for name in ("flight_date", "origin", "sched_dep_time", "carrier",
                                                                  "flight")])
    return ordered.to_pandas(), unlabelled


def content_sha256(frame: "pd.DataFrame") -> str:
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return hashlib.sha256(hashed).hexdigest()


@dataclass
class TrainingSet:
    set_id: str
    uris: dict[str, str]
    rows: dict[str, int]
    positives: dict[str, int]
    cancelled_excluded: dict[str, int]
    dates_missing: dict[str, dict[str, str]]
    content_sha256: dict[str, str]
    reused: bool

    def to_json(self) -> dict[str, Any]:
        return {"set_id": self.set_id, "train_uri": self.uris["train"], "holdout_uri": self.uris["holdout"],
                "rows": self.rows, "positives": self.positives, "cancelled_excluded": self.cancelled_excluded,
                "dates_missing": self.dates_missing, "content_sha256": self.content_sha256, "reused": self.reused}


def _from_manifests(lake: Lake, set_id: str) -> TrainingSet:
    metas = {split: lake.partition(training_set_key(set_id, split)) for split in SPLITS}
    return TrainingSet(
        set_id, {s: p.uri for s, p in metas.items()}, {s: p.rows for s, p in metas.items()},
        {s: p.metadata["positives"] for s, p in metas.items()},
        {s: p.metadata["cancelled_excluded"] for s, p in metas.items()},
        {s: p.metadata["dates_missing"] for s, p in metas.items()},
        {s: p.metadata["content_sha256"] for s, p in metas.items()}, reused=True,
    )


def build_training_set(lake: Lake, windows: Windows, *, settings: "Settings | None" = None) -> TrainingSet:
    """Build (or reuse) the training set of `windows`. Raises TrainingSetError when a split is unusable."""
    from jobs.settings import get_settings

    settings = settings or get_settings()
    schema = load_feature_schema(settings.features.schema_path)
    plan = plan_inputs(lake, windows)
    for split in SPLITS:
        first, last = windows.dates(split)[0], windows.dates(split)[-1]
        if not plan[split].features:
            raise TrainingSetError(f"{split} window {first}..{last} has no date with both features and outcomes: "
                                   + "; ".join(sorted(set(plan[split].missing.values()))[:3]))
    set_id = set_id_of(windows, plan, schema.sha256)
    if all(lake.partition_exists(training_set_key(set_id, split)) for split in SPLITS):
        log.info("training set %s already built from the same inputs: reused", set_id)
        return _from_manifests(lake, set_id)

    frames, cancelled = {}, {}
    for split in SPLITS:
        frames[split], cancelled[split] = build_split(lake, plan[split])
    for split in SPLITS:
        first, last = windows.dates(split)[0], windows.dates(split)[-1]
        labels = frames[split][LABEL]
        if labels.empty:
            raise TrainingSetError(f"{split} window {first}..{last} has no labelled flight")
        if labels.nunique() < 2:
            raise TrainingSetError(f"{split} window {first}..{last} has a single class "
                                   f"({LABEL}={int(labels.iloc[0])} for all {len(labels)} flights)")
    partitions, hashes = {}, {}
    for split in SPLITS:
        frame = frames[split]
        hashes[split] = content_sha256(frame)
        metadata = {
            "set_id": set_id, "split": split, "windows": windows.to_json(),
            "features": plan[split].features, "labels": plan[split].labels,
            "dates_missing": plan[split].missing, "rows": len(frame), "positives": int(frame[LABEL].sum()),
            "cancelled_excluded": cancelled[split], "content_sha256": hashes[split],
            "feature_schema_version": schema.version, "label": f"{LABEL} = arr_delay >= {DELAYED_MINUTES}",
        }
        partitions[split] = lake.write_partition(training_set_key(set_id, split), frame, metadata)
        log.info("%s: %d rows (%d delayed, %d cancelled excluded, %d dates left out) -> %s", split, len(frame),
                 metadata["positives"], cancelled[split], len(plan[split].missing), partitions[split].uri)
    return TrainingSet(
        set_id, {s: p.uri for s, p in partitions.items()}, {s: p.rows for s, p in partitions.items()},
        {s: int(frames[s][LABEL].sum()) for s in SPLITS}, cancelled, {s: plan[s].missing for s in SPLITS}, hashes,
        reused=False,
    )


def read_training_set(lake: Lake, set_id: str, split: str) -> "pd.DataFrame":
    return lake.read_partition(training_set_key(set_id, split))


def lake_results(argv: list[str], since: dt.datetime) -> list[dict[str, Any]]:
    """The result a run with these CLI arguments left in the lake (for runners that cannot read its stdout)."""
    parser = argparse.ArgumentParser()
    add_window_arguments(parser)
    windows = windows_of(parser.parse_args(list(argv)))
    lake = Lake.from_settings()
    set_id = set_id_of(windows, plan_inputs(lake, windows), load_feature_schema().sha256)
    result = _from_manifests(lake, set_id)
    written = dt.datetime.fromisoformat(lake.read_manifest(training_set_key(set_id, "train"))["written_at"])
    result.reused = written < since
    return [result.to_json()]


def add_window_arguments(parser: argparse.ArgumentParser) -> None:
    for name in ("train-start", "train-end", "holdout-start", "holdout-end"):
        parser.add_argument(f"--{name}", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD")


def windows_of(args: argparse.Namespace) -> Windows:
    return Windows(args.train_start, args.train_end, args.holdout_start, args.holdout_end)


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("jobs.training_set", __doc__.split("\n\n")[0],
                         "--train-start 2013-01-01 --train-end 2013-02-21 --holdout-start 2013-02-22 "
                         "--holdout-end 2013-02-28")
    add_window_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        windows = windows_of(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        result = build_training_set(Lake.from_settings(), windows)
    except TrainingSetError as exc:
        print(f"ERROR jobs.training_set rejected: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    emit_result(result.to_json())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
