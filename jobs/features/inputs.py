"""The feature step's inputs: raw partitions and planes read through the lake, their lineage, their hand-over to Spark.

Inputs are read through the lake (`_manifest.json`, then the Parquet files it lists) into
Arrow and handed to Spark with `createDataFrame`, not read by Spark from the lake's
paths: a day is ~1k flights, 24x3 weather rows and 28 days of outcomes (~25k rows), and
this way the same code reads a local or an S3 lake without s3a on the classpath and sees
exactly the files a manifest committed. Reading raw straight from s3a:// is the change to
make when volumes grow. Only the columns the transforms read (INPUT_COLUMNS) are loaded.

Missing input: no raw schedule of a date, or no planes table, is a FeatureInputError
naming it (the CLI's exit 2); no weather partition (the source has none for 2013-12-31)
and missing outcome days in the lookback are recorded in `missing`: the transforms then
give every flight of that day `weather_available = false`, or count fewer days in
`history_days_available`.

The outcomes of the last date of a range, or later, are never read: a flight date's own
outcomes arrive a day after its features are built.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from jobs.features.transforms import INPUT_COLUMNS
from jobs.lake import Lake, PartitionNotFound, raw_key, reference_key

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

PLANE_COLUMNS = ("tailnum", "year", "seats", "engine")
# Rows of an input per row of the local relation handed to Spark (`packed_frame`): a
# plan carrying a few values is analysed in milliseconds, one carrying 25k rows is not.
PACKED_ROWS = 4096


class FeatureInputError(RuntimeError):
    """An input the step cannot do without is absent (raw schedule, planes table): exit 2."""


def raw_spark_schema(feed: str) -> "StructType":
    """Spark schema of the columns the features read from a raw partition (jobs.validation.RAW_DTYPES)."""
    from pyspark.sql import types as T

    from jobs.validation import FLIGHT_DATE, RAW_DTYPES

    spark_types = {"int64": T.LongType(), "Int64": T.LongType(), "float64": T.DoubleType(),
                   "string": T.StringType(), "timestamp": T.TimestampType()}
    fields = []
    for column in INPUT_COLUMNS[feed]:
        dtype = T.DateType() if column == FLIGHT_DATE else spark_types[RAW_DTYPES[feed][column]]
        fields.append(T.StructField(column, dtype, nullable=True))
    return T.StructType(fields)


PLANES_SCHEMA_DDL = "tailnum string, year bigint, seats bigint, engine string"


def planes_spark_schema() -> "StructType":
    """PLANES_SCHEMA_DDL as a StructType, built here: a DDL string is parsed by the server under Spark Connect."""
    from pyspark.sql import types as T

    types = {"string": T.StringType(), "bigint": T.LongType()}
    return T.StructType([T.StructField(name, types[kind], nullable=True)
                         for name, kind in (column.split() for column in PLANES_SCHEMA_DDL.split(", "))])


@dataclass
class FeatureInputs:
    """What was read for a range of flight dates: Arrow tables plus their lineage."""

    schedule: "pa.Table"
    weather: "pa.Table"
    outcomes: "pa.Table"
    planes: "pa.Table"
    write_ids: dict[str, str] = field(default_factory=dict)  # raw partition key -> manifest write_id
    planes_sha256: str = ""
    missing: list[str] = field(default_factory=list)  # raw partition keys not found (weather, outcomes)


def _read_raw(lake: Lake, key: str, columns: Sequence[str]) -> tuple["pa.Table", str]:
    """The partition's committed files, as its manifest lists them, and the manifest's write_id."""
    table, manifest = lake.read_table(key, columns)
    return table, manifest["write_id"]


def _empty(schema: "StructType") -> "pa.Table":
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema, timezone="UTC").empty_table()


def _concat(tables: list["pa.Table"], schema: "StructType") -> "pa.Table":
    import pyarrow as pa

    return pa.concat_tables(tables, promote_options="default") if tables else _empty(schema)


def outcome_days(day: dt.date, lookback_days: int, earliest: dt.date | None = None) -> list[dt.date]:
    """The outcome dates the features of `day` read: day-lookback .. day-1, none before `earliest`.

    `earliest` is the source's first flight date: days before it are not missing, they never existed.
    """
    days = [day - dt.timedelta(days=back) for back in range(lookback_days, 0, -1)]
    return [d for d in days if earliest is None or d >= earliest]


def _span(first: dt.date, last: dt.date, lookback_days: int,
          earliest: dt.date | None) -> tuple[list[dt.date], list[dt.date]]:
    """The flight dates first..last and the outcome dates their features read (all before `last`)."""
    dates = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    history = sorted({d for day in dates for d in outcome_days(day, lookback_days, earliest)})
    return dates, history


def _no_schedule(lake: Lake, absent: Sequence[str]) -> FeatureInputError:
    return FeatureInputError(
        "no raw schedule for " + ", ".join(lake.uri(k) for k in absent)
        + " (ingest it first: python -m jobs.ingest --ds DATE --feed schedule)"
    )


def _planes_file(lake: Lake) -> bytes:
    """landing/reference/planes.csv as it is now; FeatureInputError when it was never published."""
    planes_key = reference_key("planes")
    if not lake.exists(planes_key):
        raise FeatureInputError(f"reference table missing: {lake.uri(planes_key)} (run jobs.publish first)")
    return lake.read_bytes(planes_key)


def read_planes(data: bytes) -> "pd.DataFrame":
    """The columns the features use from landing/reference/planes.csv, typed (year may be empty)."""
    import pandas as pd

    from jobs.validation import CSV_OPTIONS

    planes = pd.read_csv(io.BytesIO(data), **CSV_OPTIONS)
    # One row per tail (the table's key), so that joining it never multiplies a flight.
    planes = planes[list(PLANE_COLUMNS)].drop_duplicates("tailnum", keep="first").reset_index(drop=True)
    return planes.astype({"tailnum": "string", "year": "Int64", "seats": "Int64", "engine": "string"})


def read_inputs(lake: Lake, first: dt.date, last: dt.date, lookback_days: int,
                earliest: dt.date | None = None) -> FeatureInputs:
    """Schedules and weather of first..last, the outcomes they may see (never of `last` or later), planes."""
    import pyarrow as pa

    dates, history = _span(first, last, lookback_days, earliest)
    write_ids: dict[str, str] = {}
    missing: list[str] = []
    tables: dict[str, list[pa.Table]] = {"schedule": [], "weather": [], "flights": []}

    absent = [key for key in (raw_key("schedule", d.isoformat()) for d in dates) if not lake.partition_exists(key)]
    if absent:
        raise _no_schedule(lake, absent)
    wanted = ([("schedule", d) for d in dates] + [("weather", d) for d in dates]
              + [("flights", d) for d in history])
    for feed, day in wanted:
        assert feed != "flights" or day < last, "outcomes of the last date are never read"
        key = raw_key(feed, day.isoformat())
        try:
            table, write_id = _read_raw(lake, key, INPUT_COLUMNS[feed])
        except PartitionNotFound:
            if feed == "schedule":
                raise FeatureInputError(f"no raw schedule: partition {lake.uri(key)} does not exist") from None
            missing.append(key)
            continue
        tables[feed].append(table)
        write_ids[key] = write_id

    planes_bytes = _planes_file(lake)
    return FeatureInputs(
        schedule=_concat(tables["schedule"], raw_spark_schema("schedule")),
        weather=_concat(tables["weather"], raw_spark_schema("weather")),
        outcomes=_concat(tables["flights"], raw_spark_schema("flights")),
        planes=pa.Table.from_pandas(read_planes(planes_bytes), preserve_index=False),
        write_ids=write_ids,
        planes_sha256=hashlib.sha256(planes_bytes).hexdigest(),
        missing=missing,
    )


@dataclass
class InputLineage:
    """What the features of a range would read, from the manifests alone (no data read)."""

    write_ids: dict[str, str]
    planes_sha256: str
    missing: list[str]


def read_lineage(lake: Lake, first: dt.date, last: dt.date, lookback_days: int,
                 earliest: dt.date | None = None) -> InputLineage:
    """The committed write of every input partition of first..last: enough to fingerprint, in milliseconds.

    Raises FeatureInputError, like `read_inputs`, when a schedule partition or the planes table is missing.
    """
    dates, history = _span(first, last, lookback_days, earliest)
    write_ids: dict[str, str] = {}
    missing: list[str] = []
    absent: list[str] = []
    for feed, days in (("schedule", dates), ("weather", dates), ("flights", history)):
        for day in days:
            key = raw_key(feed, day.isoformat())
            try:
                write_ids[key] = lake.read_manifest(key)["write_id"]
            except PartitionNotFound:
                (absent if feed == "schedule" else missing).append(key)
    if absent:
        raise _no_schedule(lake, absent)
    return InputLineage(write_ids, hashlib.sha256(_planes_file(lake)).hexdigest(), missing)


def to_spark(spark: "SparkSession", inputs: FeatureInputs) -> dict[str, "DataFrame"]:
    """The inputs as Spark DataFrames with the raw zone's types (each one packed: see `packed_frame`)."""
    return {
        "schedule": packed_frame(spark, inputs.schedule, raw_spark_schema("schedule")),
        "weather": packed_frame(spark, inputs.weather, raw_spark_schema("weather")),
        "outcomes": packed_frame(spark, inputs.outcomes, raw_spark_schema("flights")),
        "planes": packed_frame(spark, inputs.planes, planes_spark_schema()),
    }


def packed_frame(spark: "SparkSession", table: "pa.Table", schema: "StructType") -> "DataFrame":
    """`table` as a DataFrame of `schema`, handed to Spark as a few rows of PACKED_ROWS rows each, unpacked by Spark.

    A DataFrame made from local data carries its rows in its plan, and Spark's analyzer and
    optimizer walk those rows once for every rule they apply: loose, a one-day plan's 25k
    outcome rows make analysing it much slower, paid again by a Spark Connect server on
    every round trip. Packed, the plan holds a handful of array values; `inline` turns them
    back into rows when the query runs.
    """
    import pyarrow as pa
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_schema

    table = table.select(schema.fieldNames()).cast(to_arrow_schema(schema, timezone="UTC"))
    rows = pa.StructArray.from_arrays([column.combine_chunks() for column in table.columns], fields=list(table.schema))
    offsets = pa.array([*range(0, len(rows), PACKED_ROWS), len(rows)] if len(rows) else [0], pa.int32())
    packed = pa.table({"_rows": pa.ListArray.from_arrays(offsets, rows)})
    return spark.createDataFrame(packed, schema=T.StructType([T.StructField("_rows", T.ArrayType(schema))])) \
        .selectExpr("inline(_rows)")
