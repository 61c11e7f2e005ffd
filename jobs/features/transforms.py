"""The pure Spark transforms: raw-zone DataFrames in, the features in the declared schema out (`build_features`).

Each feature family is one function over DataFrames; `build_features` chains them and
conforms the result to config/features.yaml.

Expressions are written as Spark SQL strings: one py4j call each instead of one per
function, which is most of the planning time of a one-day job. Nothing here asks Spark
for a schema (`.columns`, `.schema`, `drop`, `dropDuplicates`) but `_conform`, once: as a
Spark Connect client each of those analyses the whole plan so far, on the server, for
every day built. Columns a transform only needs on the way start with "_" and are left in
place: `_conform` keeps the declared columns alone. pyspark is imported inside functions.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Sequence

from jobs.features.params import FeatureParams
from jobs.features.schema import TYPE_FAMILY, FeatureSchema, FeatureSchemaError, load_feature_schema, type_family
from jobs.feeds import DELAYED_MINUTES, FLIGHT_KEY

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

HISTORY_WINDOWS = (7, 28)  # days before the flight date; the column names carry them
HISTORY_KEYS = ("carrier", "origin", "route", "tailnum")
WEATHER_MEASUREMENTS = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure",
                        "visib")
_ALL = "*"  # the history group of all departures (the fallback)
# The raw columns each transform reads: the rest of a raw partition is never loaded.
INPUT_COLUMNS = {
    "schedule": (*FLIGHT_KEY, "flight_date", "sched_dep_time", "tailnum", "dest", "distance", "hour", "time_hour"),
    "weather": ("origin", "flight_date", "time_hour", *WEATHER_MEASUREMENTS),
    "flights": ("flight_date", "carrier", "origin", "dest", "tailnum", "arr_delay"),
}


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
    built = {f.name: type_family(f.dataType)
             for f in frame.schema.fields if not f.name.startswith("_") and f.name not in inputs_only}
    problems = [f"  declared column {c.name} ({c.type}) is not built" for c in declared.columns if c.name not in built]
    problems += [f"  built column {name} is not declared" for name in built if name not in declared.names]
    problems += [f"  column {c.name}: declared {c.type}, built {built[c.name]}" for c in declared.columns
                 if c.name in built and built[c.name] != TYPE_FAMILY[c.type]]
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
