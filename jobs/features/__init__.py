"""Point-in-time features for the flights scheduled on a date, built with Spark.

    python -m jobs.features --ds 2013-02-10                    # features/flights/date=2013-02-10
    python -m jobs.features --ds 2013-01-01 --days 31          # a range, one Spark session
    python -m jobs.features --ds 2013-02-10 --lookback-days 7  # read less history (jobs.features.cli)
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
  target), `{key}_delay_rate_{w}d` (share with arr_delay >= 15 min: jobs.feeds.DELAYED_MINUTES) and
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
Carried along: the flight key (year, month, day, carrier, flight, origin: jobs.feeds.FLIGHT_KEY),
`flight_date`, `sched_dep_time`, `tailnum`.

The modules, one job each:
- schema: the declared schema (config/features.yaml), its loader and the schema check;
- params: the parameters besides the data (settings, holidays);
- transforms: the pure Spark transforms, chained by `build_features`;
- inputs: raw partitions and planes read through the lake, their lineage, Arrow to Spark;
- output: the partitions' metadata and fingerprint, the checked write, the code version;
- cli: `compute_features` (a range in one pass, unchanged dates skipped) and the CLI;
  `__main__` runs it (`python -m jobs.features`, and the file Spark's driver runs).

One date costs what Spark spends planning it, not its data, so a build asks Spark as
little as it can: the inputs go in packed a few thousand rows to a value (a plan that
carries 25k loose rows is walked row by row by every analyzer and optimizer rule), the
transforms never ask for a schema, the declared schema is checked once, and the
features are computed by one action and ordered on the driver. As a Spark Connect
client that is two round trips per pass; the session it started is released at the end,
or the server would hold its plans, with their data, until it idles out.

Exit codes and result lines follow jobs/results.py: 0 written; 2 bad usage or a missing
input (schedule partition, planes table). One line per date on stdout:
    STEP_RESULT {"ds": ..., "status": "written"|"unchanged", "features_uri": ..., "rows": ..., "fingerprint": ..., "missing_inputs": [...],
                 "outcome_days_read": ..., "outcome_days_missing": ..., "seconds": ...}
pyspark is imported inside functions (DAG files may import this package's constants).
The names below are re-exported for the package's users; its own modules import each other directly.
"""
from __future__ import annotations

from jobs.features.cli import FeatureResult, compute_features, lake_results, main
from jobs.features.inputs import (
    PLANES_SCHEMA_DDL, FeatureInputError, packed_frame, planes_spark_schema, raw_spark_schema, read_planes,
)
from jobs.features.output import features_key, write_features
from jobs.features.params import FeatureParams, us_federal_holidays
from jobs.features.schema import FeatureColumn, FeatureSchema, FeatureSchemaError, check_schema, load_feature_schema
from jobs.features.transforms import (
    HISTORY_KEYS, HISTORY_WINDOWS, INPUT_COLUMNS, build_features, history_features, plane_features, schedule_features,
    weather_features,
)

__all__ = [
    "HISTORY_KEYS", "HISTORY_WINDOWS", "INPUT_COLUMNS", "PLANES_SCHEMA_DDL",
    "FeatureColumn", "FeatureInputError", "FeatureParams", "FeatureResult", "FeatureSchema", "FeatureSchemaError",
    "build_features", "check_schema", "compute_features", "features_key", "history_features", "lake_results",
    "load_feature_schema", "main", "packed_frame", "plane_features", "planes_spark_schema", "raw_spark_schema",
    "read_planes", "schedule_features", "us_federal_holidays", "weather_features", "write_features",
]
