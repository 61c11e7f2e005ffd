"""Point-in-time features for the flights scheduled on a date, built with Spark.

    python -m jobs.features --ds 2013-02-10                    # features/flights/date=2013-02-10
    python -m jobs.features --ds 2013-01-01 --days 31          # a range, one Spark session
    python -m jobs.features --ds 2013-02-10 --lookback-days 7  # read less history (see below)
    python -m jobs.features --ds 2013-02-10 --force            # rebuild even if nothing changed

What a flight scheduled on D is allowed to see (DESIGN.md, "The data"): D's schedule,
D's weather feed (a stand-in for a forecast) and the outcomes of the days before D. The
outcomes of D itself arrive a day later and are joined as labels by training and
monitoring, never here. `build_features` enforces this on its own: each flight date
only ever meets outcomes dated strictly before it, whatever the caller passes in, and
the CLI never reads `raw/flights/date=D` or later.

Features (names, Spark types and roles: `config/features.yaml`, declared once):
- schedule: `sched_dep_hour` (local), `day_of_week` (ISO, 1 = Monday), `month`,
  `days_to_nearest_holiday` (US federal holidays, pandas' USFederalHolidayCalendar, of the
  years the source covers and the next: 2013/2014); `carrier`, `origin`, `dest`, `route`
  (origin-dest), `distance`.
- plane (landing/reference/planes.csv): `plane_age` (flight year - year built), `plane_seats`,
  `plane_engine`; a tail number absent from the table (or none scheduled) gives nulls and
  `plane_known = false`.
- origin weather at the scheduled hour (`time_hour`, UTC): the latest observation of D's
  weather feed for that origin at or before it; one older than
  `features.weather_max_age_hours`, or none, gives null measurements and
  `weather_available = false`. `weather_age_hours` says how old the one used is.
- history over the 7 and 28 days before D, from the outcomes (`raw/flights`): for each of
  carrier, origin, route and tail number, `{key}_flights_{w}d` (flights that arrived:
  cancelled and diverted ones, with no arrival delay, are excluded, as they are from the
  target), `{key}_delay_rate_{w}d` (share with arr_delay >= 15 min) and
  `{key}_mean_arr_delay_{w}d`. Defaults, documented here and in the schema: a group with
  no arrived flight in a window takes the rate and mean of all departures in that window;
  a window with none at all (2013-01-01, or every outcome day missing) takes
  `features.default_delay_rate` (0.2: about a fifth of US flights arrived 15+ min late in
  2012-2013 per BTS on-time statistics; a prior, not fitted on this data) and
  `features.default_mean_arr_delay` (0).
  `history_days_available` counts the outcome days found in the 28 days before D, so the
  model can tell a default from a measurement.
- congestion: `origin_hour_departures`, flights scheduled at the origin in the same local
  hour of D (from D's schedule: known in advance).
Carried along: the flight key (year, month, day, carrier, flight, origin), `flight_date`,
`sched_dep_time`, `tailnum`.

Inputs are read through the lake (`_manifest.json`, then the Parquet files it lists) into
Arrow and handed to Spark with `createDataFrame`, not read by Spark from the lake's
paths: a day is ~1k flights, 24x3 weather rows and 28 days of outcomes (~25k rows), and
this way the same code reads a local or an S3 lake without s3a on the classpath and sees
exactly the files a manifest committed. Spark does the joins and windows; a range of
dates (`--days`, `compute_features`) is one pass in one session, then one partition per
date, so a backfill pays the JVM start and warm-up once, not per day. Reading raw
straight from s3a:// is the change to make when volumes grow.

One date costs what Spark spends planning it, not its data, so a build asks Spark as
little as it can: the inputs go in packed a few thousand rows to a value (a plan that
carries 25k loose rows is walked row by row by every analyzer and optimizer rule), the
transforms never ask for a schema, the declared schema is checked once, and the
features are computed by one action and ordered on the driver. As a Spark Connect
client that is two round trips per pass; the session it started is released at the end,
or the server would hold its plans, with their data, until it idles out.

Missing input: no raw schedule of a date is an error naming the partition (exit 2);
no weather partition (the source has none for 2013-12-31) gives every flight of the day
`weather_available = false`, logged and recorded; missing outcome days in the lookback
are skipped, counted in the metadata and visible in `history_days_available`. A day whose
schedule has no rows writes an empty partition with the full schema.

Output: `features/flights/date={ds}/`, replaced atomically by `Lake.write_partition`, after
the frame's schema is checked against the declared one (a mismatch fails, naming each
column). Its metadata records every input read (raw partition keys with their manifest
write_id, the planes file's sha256), what was missing, the schema version, the code
version (sha256 of this file; the git commit when there is one), the parameters and a
`fingerprint` over all of these: same fingerprint, same features.

Skip what has not changed: before any data is read, the fingerprint each date would get
is worked out from the input manifests alone (milliseconds). A date whose partition
already records it is left in place and reported `"status": "unchanged"`; if every date
is unchanged no Spark session starts at all. `--force` rebuilds regardless. A
redelivered raw partition (new write_id), a change of this module, of the schema or of a
feature setting all change the fingerprint.

`--lookback-days N` (default 28, the longest window) reads N days of outcomes; a shorter
lookback truncates the windows, which `history_days_available` and the metadata show.

Exit codes and result lines follow jobs/results.py: 0 written; 2 bad usage or a missing
input (schedule partition, planes table). One line per date on stdout:
    STEP_RESULT {"ds": ..., "status": "written"|"unchanged", "features_uri": ..., "rows": ..., "fingerprint": ..., "missing_inputs": [...],
                 "outcome_days_read": ..., "outcome_days_missing": ..., "seconds": ...}
pyspark is imported inside functions (DAG files may import this module's constants).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobs.feeds import DELAYED_MINUTES, FLIGHT_KEY
from jobs.lake import Lake, PartitionNotFound, partition_key, raw_key, reference_key
from jobs.results import EXIT_OK, EXIT_USAGE, emit_result

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from jobs.settings import Settings

log = logging.getLogger("jobs.features")

__all__ = [
    "FeatureInputError", "FeatureParams", "FeatureResult", "FeatureSchema", "FeatureSchemaError",
    "build_features", "check_schema", "compute_features", "features_key", "load_feature_schema", "main",
]

DATASET = "flights"
HISTORY_WINDOWS = (7, 28)  # days before the flight date; the column names carry them
HISTORY_KEYS = ("carrier", "origin", "route", "tailnum")
# The most dates one Spark pass builds; a longer range runs as several passes in one session.
RANGE_PASS_DAYS = 31
WEATHER_MEASUREMENTS = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure",
                        "visib")
PLANE_COLUMNS = ("tailnum", "year", "seats", "engine")
_ALL = "*"  # the history group of all departures (the fallback)
# Rows of an input per row of the local relation handed to Spark (`packed_frame`): a
# plan carrying a few values is analysed in milliseconds, one carrying 25k rows is not.
PACKED_ROWS = 4096
# Row order of a features partition (unique: the flight key is within it).
OUTPUT_ORDER = ("flight_date", "origin", "sched_dep_time", "carrier", "flight")
# The raw columns each transform reads: the rest of a raw partition is never loaded.
INPUT_COLUMNS = {
    "schedule": (*FLIGHT_KEY, "flight_date", "sched_dep_time", "tailnum", "dest", "distance", "hour", "time_hour"),
    "weather": ("origin", "flight_date", "time_hour", *WEATHER_MEASUREMENTS),
    "flights": ("flight_date", "carrier", "origin", "dest", "tailnum", "arr_delay"),
}


class FeatureSchemaError(ValueError):
    """A frame does not match the declared feature schema; the message names each column."""


class FeatureInputError(RuntimeError):
    """An input the step cannot do without is absent (raw schedule, planes table): exit 2."""


def features_key(ds: str) -> str:
    return partition_key("features", DATASET, ds)


# The declared schema ------------------------------------------------------------------
SparkTypeName = Literal["int", "bigint", "double", "string", "boolean", "date", "timestamp"]
Role = Literal["info", "categorical", "numeric", "indicator"]
_FAMILY = {"int": "number", "bigint": "number", "double": "number", "string": "string", "boolean": "boolean",
           "date": "date", "timestamp": "timestamp"}


class FeatureColumn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: SparkTypeName
    role: Role
    key: bool = False
    doc: str = Field(min_length=1)


class FeatureSchema(BaseModel):
    """config/features.yaml: the columns of a features partition, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=1)
    columns: tuple[FeatureColumn, ...] = Field(min_length=1)
    sha256: str = ""  # of the file it was loaded from: an edit without a version bump still shows

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns: tuple[FeatureColumn, ...]) -> tuple[FeatureColumn, ...]:
        names = [c.name for c in columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"duplicated column names: {duplicated}")
        return columns

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.key)

    def by_role(self, *roles: str) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.role in roles)

    @property
    def model_inputs(self) -> tuple[str, ...]:
        return self.by_role("categorical", "numeric", "indicator")

    def spark_schema(self) -> "StructType":
        from pyspark.sql import types as T

        return T.StructType([T.StructField(c.name, _spark_type(c.type), nullable=True) for c in self.columns])


def _spark_type(name: str):
    from pyspark.sql import types as T

    return {"int": T.IntegerType(), "bigint": T.LongType(), "double": T.DoubleType(), "string": T.StringType(),
            "boolean": T.BooleanType(), "date": T.DateType(), "timestamp": T.TimestampType()}[name]


@lru_cache(maxsize=4)
def load_feature_schema(path: Path | None = None) -> FeatureSchema:
    """The declared feature schema (default: `features.schema_file` of the settings)."""
    if path is None:
        from jobs.settings import get_settings

        path = get_settings().features.schema_path
    data = Path(path).read_bytes()
    try:
        tree = yaml.safe_load(data)
        return FeatureSchema.model_validate({**(tree or {}), "sha256": hashlib.sha256(data).hexdigest()})
    except (yaml.YAMLError, ValidationError) as exc:
        raise FeatureSchemaError(f"{path}: not a valid feature schema:\n{exc}") from None


def check_schema(schema: "StructType", declared: FeatureSchema, what: str = "features") -> None:
    """Raise FeatureSchemaError unless `schema` has exactly the declared columns, order and types."""
    built = [(f.name, f.dataType.simpleString()) for f in schema.fields]
    wanted = [(c.name, _spark_type(c.type).simpleString()) for c in declared.columns]
    if built == wanted:
        return
    built_types, wanted_types = dict(built), dict(wanted)
    problems = [f"  missing column {n} ({t})" for n, t in wanted if n not in built_types]
    problems += [f"  undeclared column {n} ({t})" for n, t in built if n not in wanted_types]
    problems += [f"  column {n}: declared {t}, got {built_types[n]}"
                 for n, t in wanted if n in built_types and built_types[n] != t]
    if not problems:
        problems = [f"  column order differs: declared {[n for n, _ in wanted]}, got {[n for n, _ in built]}"]
    raise FeatureSchemaError(
        f"{what} do not match the declared feature schema (version {declared.version}):\n" + "\n".join(problems)
    )


# Parameters ----------------------------------------------------------------------------
def us_federal_holidays(first_year: int, last_year: int) -> tuple[dt.date, ...]:
    """US federal holidays (observed dates) of the years first_year..last_year."""
    from pandas.tseries.holiday import USFederalHolidayCalendar

    days = USFederalHolidayCalendar().holidays(start=f"{first_year}-01-01", end=f"{last_year}-12-31")
    return tuple(d.date() for d in days)


@dataclass(frozen=True)
class FeatureParams:
    """Everything besides the data that the features depend on (part of the fingerprint)."""

    weather_max_age_hours: float
    default_delay_rate: float
    default_mean_arr_delay: float
    holidays: tuple[dt.date, ...]

    @classmethod
    def from_settings(cls, settings: "Settings") -> "FeatureParams":
        features = settings.features
        return cls(
            weather_max_age_hours=features.weather_max_age_hours,
            default_delay_rate=features.default_delay_rate,
            default_mean_arr_delay=features.default_mean_arr_delay,
            # The source's years and the next one: the nearest holiday of late December is New Year's Day.
            holidays=us_federal_holidays(settings.data.first_flight_date.year, settings.data.last_flight_date.year + 1),
        )

    def to_json(self) -> dict[str, Any]:
        return {"weather_max_age_hours": self.weather_max_age_hours, "default_delay_rate": self.default_delay_rate,
                "default_mean_arr_delay": self.default_mean_arr_delay,
                "holidays": [d.isoformat() for d in self.holidays]}


# Pure transforms: DataFrames in, DataFrames out ----------------------------------------
# Expressions are written as Spark SQL strings: one py4j call each instead of one per
# function, which is most of the planning time of a one-day job. Nothing here asks Spark
# for a schema (`.columns`, `.schema`, `drop`, `dropDuplicates`): as a Spark Connect client
# each of those analyses the whole plan so far, on the server, for every day built.
# Columns a transform only needs on the way start with "_" and are left in place:
# `_conform` keeps the declared columns alone.
def _route_sql(origin: str = "origin", dest: str = "dest") -> str:
    return f"concat({origin}, '-', {dest})"


def schedule_features(schedule: "DataFrame", holidays: Sequence[dt.date]) -> "DataFrame":
    """The scheduled flights with their calendar features, route and congestion."""
    if not holidays:
        raise ValueError("no holidays given: days_to_nearest_holiday needs at least one")
    holiday_dates = ", ".join(f"DATE'{day.isoformat()}'" for day in holidays)
    return schedule.select(*INPUT_COLUMNS["schedule"]).selectExpr(
        "*",
        f"{_route_sql()} AS route",
        "hour AS sched_dep_hour",
        "weekday(flight_date) + 1 AS day_of_week",
        f"array_min(transform(array({holiday_dates}), h -> abs(datediff(flight_date, h)))) AS days_to_nearest_holiday",
        "count(1) OVER (PARTITION BY flight_date, origin, hour) AS origin_hour_departures",
    )


def plane_features(flights: "DataFrame", planes: "DataFrame") -> "DataFrame":
    """Age, seats and engine of the scheduled tail; unknown tails get nulls and plane_known = false.

    `planes` has one row per tail number, as `read_planes` returns it (the first of duplicates).
    """
    from pyspark.sql import functions as F

    table = planes.selectExpr(
        "tailnum AS _plane_tailnum", "year AS _plane_year", "seats AS plane_seats", "engine AS plane_engine",
    )
    joined = flights.join(F.broadcast(table), F.expr("tailnum = _plane_tailnum"), "left")
    return joined.selectExpr(
        "*", "_plane_tailnum IS NOT NULL AS plane_known", "year(flight_date) - _plane_year AS plane_age",
    )


def weather_features(flights: "DataFrame", weather: "DataFrame", max_age_hours: float) -> "DataFrame":
    """Origin weather from the latest observation of the flight date's feed at or before the scheduled hour.

    Observations older than `max_age_hours` do not count. Each origin's feed of a date
    (a few dozen observations) becomes one array, joined to its flights by broadcast; the
    latest fresh observation is picked from it per flight: no shuffle of the flights.
    """
    from pyspark.sql import functions as F

    measurements = ", ".join(WEATHER_MEASUREMENTS)
    feeds = weather.selectExpr(
        "origin AS _w_origin", "flight_date AS _w_date",
        f"struct(unix_timestamp(time_hour) AS _obs_s, {measurements}) AS _w_obs",
    ).groupBy("_w_origin", "_w_date").agg(F.expr("collect_list(_w_obs) AS _w_feed"))
    joined = flights.join(F.broadcast(feeds), F.expr("origin = _w_origin AND flight_date = _w_date"), "left")
    # A struct orders by its first field: array_max picks the latest observation, ties broken by the values.
    fresh = (f"o -> o._obs_s <= unix_timestamp(time_hour) "
             f"AND unix_timestamp(time_hour) - o._obs_s <= {float(max_age_hours) * 3600!r}D")
    latest = joined.selectExpr("*", f"array_max(filter(_w_feed, {fresh})) AS _obs")
    return latest.selectExpr(
        "*",
        "_obs IS NOT NULL AS weather_available",
        "(unix_timestamp(time_hour) - _obs._obs_s) / 3600D AS weather_age_hours",
        *[f"_obs.{m} AS {m}" for m in WEATHER_MEASUREMENTS],
    )


def history_features(flights: "DataFrame", outcomes: "DataFrame", params: FeatureParams) -> "DataFrame":
    """Delay rate and mean arrival delay by carrier, origin, route and tail over the windows before each date.

    Each flight date F meets only the outcomes dated F-1 .. F-max(window): the pairs are
    generated from F, so an outcome of F or later cannot reach F's features. Every key is
    aggregated in one pass (each outcome row is exploded into one row per key, plus one
    for all departures, the fallback); the groups of a date are then folded into one row
    (a map per key) that is joined to the date's flights by broadcast and looked up.
    """
    from pyspark.sql import functions as F

    longest = max(HISTORY_WINDOWS)
    targets = flights.selectExpr("flight_date AS _target").distinct().selectExpr(
        "_target", f"explode(sequence(1, {longest})) AS _days_back",
    ).selectExpr("*", "date_sub(_target, _days_back) AS _out_date")
    groups = ", ".join([f"named_struct('name', '{key}', 'value', {key})" for key in HISTORY_KEYS]
                       + [f"named_struct('name', '{_ALL}', 'value', '{_ALL}')"])
    past = outcomes.selectExpr(
        "flight_date AS _out_date", "CAST(arr_delay AS double) AS _arr_delay",
        "carrier", "origin", f"{_route_sql()} AS route", "tailnum",
    ).selectExpr("_out_date", "_arr_delay", f"explode(array({groups})) AS _group").selectExpr(
        "_out_date", "_arr_delay", "_group.name AS _name", "_group.value AS _value",
    ).where("_value IS NOT NULL").join(F.broadcast(targets), "_out_date")

    # count(CASE ...), not count_if: count_if's shared subexpression gets a fresh name in
    # every query, so its generated code never hits Spark's compile cache.
    sums = [f"bit_or(CASE WHEN _name = '{_ALL}' THEN shiftleft(1L, _days_back) END) AS _days"]
    stats = []
    for window in HISTORY_WINDOWS:
        arrived = f"_days_back <= {window} AND _arr_delay IS NOT NULL"
        sums += [
            f"count(CASE WHEN {arrived} THEN 1 END) AS _n{window}",
            f"count(CASE WHEN {arrived} AND _arr_delay >= {DELAYED_MINUTES} THEN 1 END) AS _d{window}",
            f"sum(CASE WHEN {arrived} THEN _arr_delay END) AS _s{window}",
        ]
        stats += [f"_n{window} AS n{window}", f"_d{window} AS d{window}", f"_s{window} AS s{window}"]
    stat = f"struct({', '.join(stats)})"
    per_group = past.groupBy("_target", "_name", "_value").agg(*[F.expr(s) for s in sums])
    per_date = per_group.groupBy("_target").agg(
        F.expr(f"max(CASE WHEN _name = '{_ALL}' THEN bit_count(_days) END) AS _h_days"),
        F.expr(f"max(CASE WHEN _name = '{_ALL}' THEN {stat} END) AS _h_all"),
        *[F.expr(f"map_from_entries(collect_list(CASE WHEN _name = '{key}' THEN struct(_value, {stat}) END)) "
                 f"AS _h_map_{key}") for key in HISTORY_KEYS],
    )
    joined = flights.join(F.broadcast(per_date), F.expr("flight_date = _target"), "left").selectExpr(
        "*", *[f"_h_map_{key}[{key}] AS _h_{key}" for key in HISTORY_KEYS],
    )

    columns = ["coalesce(_h_days, 0) AS history_days_available"]
    for key in HISTORY_KEYS:
        for window in HISTORY_WINDOWS:
            n, all_n = f"coalesce(_h_{key}.n{window}, 0)", f"_h_all.n{window}"
            columns += [
                f"{n} AS {key}_flights_{window}d",
                f"CASE WHEN {n} > 0 THEN _h_{key}.d{window} / {n} WHEN {all_n} > 0 THEN _h_all.d{window} / {all_n} "
                f"ELSE {float(params.default_delay_rate)!r}D END AS {key}_delay_rate_{window}d",
                f"CASE WHEN {n} > 0 THEN _h_{key}.s{window} / {n} WHEN {all_n} > 0 THEN _h_all.s{window} / {all_n} "
                f"ELSE {float(params.default_mean_arr_delay)!r}D END AS {key}_mean_arr_delay_{window}d",
            ]
    return joined.selectExpr("*", *columns)


def _conform(frame: "DataFrame", declared: FeatureSchema, inputs_only: Sequence[str] = ()) -> "DataFrame":
    """Select the declared columns, in order, cast to the declared types.

    A declared column that was not built, a built column that is not declared (besides
    helpers, "_...", and `inputs_only`), or a cast across kinds (a string to a number) is a
    FeatureSchemaError: casts only settle widths. The one schema round trip of a build:
    `DataFrame.to` gives the result its schema without asking Spark again.
    """
    from pyspark.sql import types as T

    family = {T.IntegerType: "number", T.LongType: "number", T.DoubleType: "number", T.StringType: "string",
              T.BooleanType: "boolean", T.DateType: "date", T.TimestampType: "timestamp"}
    built = {f.name: family.get(type(f.dataType), f.dataType.simpleString())
             for f in frame.schema.fields if not f.name.startswith("_") and f.name not in inputs_only}
    problems = [f"  declared column {c.name} ({c.type}) is not built" for c in declared.columns if c.name not in built]
    problems += [f"  built column {name} is not declared" for name in built if name not in declared.names]
    problems += [f"  column {c.name}: declared {c.type}, built {built[c.name]}" for c in declared.columns
                 if c.name in built and built[c.name] != _FAMILY[c.type]]
    if problems:
        raise FeatureSchemaError(
            f"the features built do not match the declared feature schema (version {declared.version}):\n"
            + "\n".join(problems)
        )
    return frame.to(declared.spark_schema())


def build_features(
    schedule: "DataFrame",
    weather: "DataFrame",
    outcomes: "DataFrame",
    planes: "DataFrame",
    params: FeatureParams,
    schema: FeatureSchema | None = None,
) -> "DataFrame":
    """Features for every flight in `schedule` (one flight date or many), in the declared schema.

    Inputs are raw-zone frames (columns as in INPUT_COLUMNS; `planes` as the reference
    table). `weather` and `outcomes` may span more dates than needed: each flight sees
    only its own date's weather and the outcomes of the days before its date. Training
    and scoring both call this; there is no second implementation.
    """
    schema = schema or load_feature_schema()
    flights = schedule_features(schedule, params.holidays)
    flights = plane_features(flights, planes)
    flights = weather_features(flights, weather, params.weather_max_age_hours)
    flights = history_features(flights, outcomes, params)
    # The schedule's `hour` and `time_hour` were inputs only (sched_dep_hour carries the hour).
    return _conform(flights, schema, inputs_only=("hour", "time_hour"))


# Input: raw partitions through the lake ---------------------------------------------------
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

    dates = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    write_ids: dict[str, str] = {}
    missing: list[str] = []
    tables: dict[str, list[pa.Table]] = {"schedule": [], "weather": [], "flights": []}

    absent = [key for key in (raw_key("schedule", d.isoformat()) for d in dates) if not lake.partition_exists(key)]
    if absent:
        raise FeatureInputError(
            "no raw schedule for " + ", ".join(lake.uri(k) for k in absent)
            + " (ingest it first: python -m jobs.ingest --ds DATE --feed schedule)"
        )
    history = sorted({d for day in dates for d in outcome_days(day, lookback_days, earliest)})
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

    planes_key = reference_key("planes")
    if not lake.exists(planes_key):
        raise FeatureInputError(f"reference table missing: {lake.uri(planes_key)} (run jobs.publish first)")
    planes_bytes = lake.read_bytes(planes_key)
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
    dates = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    history = sorted({d for day in dates for d in outcome_days(day, lookback_days, earliest)})
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
        raise FeatureInputError(
            "no raw schedule for " + ", ".join(lake.uri(k) for k in absent)
            + " (ingest it first: python -m jobs.ingest --ds DATE --feed schedule)"
        )
    planes_key = reference_key("planes")
    if not lake.exists(planes_key):
        raise FeatureInputError(f"reference table missing: {lake.uri(planes_key)} (run jobs.publish first)")
    return InputLineage(write_ids, hashlib.sha256(lake.read_bytes(planes_key)).hexdigest(), missing)


def current_fingerprint(lake: Lake, ds: str) -> str | None:
    """The fingerprint recorded by the features partition of `ds`, or None when there is none."""
    try:
        return lake.read_manifest(features_key(ds)).get("metadata", {}).get("fingerprint")
    except PartitionNotFound:
        return None


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
    outcome rows doubled the cost of analysing it (1.65 s of CPU against 0.83 s packed, as a
    Spark Connect client), paid again by the server on every round trip. Packed, the plan
    holds a handful of array values; `inline` turns them back into rows when the query runs.
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


# Output ----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def code_version() -> dict[str, str | None]:
    """sha256 of this module (what the features are computed by) and, when known, the git commit."""
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None  # an image without .git: the module hash is what counts
    return {"code_version": f"sha256:{digest}", "git_commit": commit}


def partition_metadata(ds: str, inputs: "FeatureInputs | InputLineage", lookback_days: int, params: FeatureParams,
                       schema: FeatureSchema, earliest: dt.date | None = None) -> dict[str, Any]:
    """Lineage of one date's partition, with the fingerprint of everything its features depend on."""
    day = dt.date.fromisoformat(ds)
    own = [raw_key("schedule", ds), raw_key("weather", ds)] + [
        raw_key("flights", d.isoformat()) for d in outcome_days(day, lookback_days, earliest)
    ]
    read = {key: inputs.write_ids[key] for key in own if key in inputs.write_ids}
    missing = [key for key in own if key in inputs.missing]
    versions = code_version()
    fingerprinted = {
        "inputs": read, reference_key("planes"): f"sha256:{inputs.planes_sha256}", "missing": missing,
        "feature_schema": [schema.version, schema.sha256], "code_version": versions["code_version"],
        "params": params.to_json(), "lookback_days": lookback_days,
    }
    fingerprint = hashlib.sha256(json.dumps(fingerprinted, sort_keys=True).encode()).hexdigest()
    outcome_keys = [k for k in own if k.startswith("raw/flights/")]
    return {
        "ds": ds,
        "inputs": read,
        "reference": {reference_key("planes"): f"sha256:{inputs.planes_sha256}"},
        "missing_inputs": missing,
        "outcome_days_read": sum(k in read for k in outcome_keys),
        "outcome_days_missing": sum(k in missing for k in outcome_keys),
        "lookback_days": lookback_days,
        "feature_schema_version": schema.version,
        "feature_schema_sha256": schema.sha256,
        **versions,
        "params": params.to_json(),
        "fingerprint": fingerprint,
    }


def write_features(lake: Lake, features: "DataFrame", dates: Iterable[dt.date],
                   metadata: dict[str, dict[str, Any]], schema: FeatureSchema) -> dict[str, Any]:
    """Collect `features`, check them against the declared schema, then replace one partition per date
    (empty if no flight); nothing is written unless the schema matches.

    One Spark action: the schema is read from the collected Arrow table, not asked of Spark
    (a round trip that analyses the whole plan again under Spark Connect), and the rows are
    put in OUTPUT_ORDER on the driver, not by a Spark sort (a sampling job and a shuffle).
    """
    import pyarrow.compute as pc
    from pyspark.sql.pandas.types import from_arrow_schema

    table = features.toArrow()
    check_schema(from_arrow_schema(table.schema), schema)
    table = table.sort_by([(column, "ascending", "at_start") for column in OUTPUT_ORDER])  # Spark's ASC NULLS FIRST
    written = {}
    for day in dates:
        ds = day.isoformat()
        rows = table.filter(pc.equal(table["flight_date"], day))
        written[ds] = lake.write_partition(features_key(ds), _to_pandas(rows), metadata[ds])
    return written


def _to_pandas(table: "pa.Table") -> "pd.DataFrame":
    """pandas nullable dtypes that Lake's Parquet writer maps back to exactly the declared types.

    Integers stay integers with nulls (Int32), booleans stay booleans; dates are Arrow-backed
    so that an empty day still writes a date column, not an untyped one.
    """
    import pandas as pd
    import pyarrow as pa

    mapping = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(),
               pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype(),
               pa.date32(): pd.ArrowDtype(pa.date32())}
    return table.to_pandas(types_mapper=mapping.get)


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
                meta = partition.metadata
                log.info("features %s unchanged (fingerprint %s): kept %s", ds, planned[day][:12], partition.uri)
                results[day] = FeatureResult(ds, "unchanged", partition.uri, partition.rows, planned[day],
                                             meta.get("missing_inputs", []), meta.get("outcome_days_read", 0),
                                             meta.get("outcome_days_missing", 0), 0.0)
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
        meta = metadata[ds]
        log.info("features %s: %d flights -> %s", ds, partition.rows, partition.uri)
        results.append(FeatureResult(ds, "written", partition.uri, partition.rows, meta["fingerprint"],
                                     meta["missing_inputs"], meta["outcome_days_read"], meta["outcome_days_missing"],
                                     round(per_day, 3)))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.features", description=__doc__.split("\n\n")[0])
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
        results.append(FeatureResult(ds, "written" if written else "unchanged", lake.uri(features_key(ds)),
                                     manifest["rows"], meta.get("fingerprint", ""), meta.get("missing_inputs", []),
                                     meta.get("outcome_days_read", 0), meta.get("outcome_days_missing", 0),
                                     0.0).to_json())
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


if __name__ == "__main__":
    sys.exit(main())
