"""An independent pandas implementation of the flight features, for checking the Spark one.

A test oracle: used by the parity test (tests/unit/test_features_parity.py) and the
benchmarks, never by the pipeline. It follows the definitions in the docstring of
jobs/features/ (the package) and config/features.yaml, but shares no code with the
package, only the label rule (jobs.feeds.DELAYED_MINUTES): the holidays are written
out by hand, the weather match is `pandas.merge_asof`, and the history is a plain loop
over flight dates and windows. Two implementations that agree on a real month are the
evidence that the definitions, not one implementation's accidents, are what is computed.

    frame = reference_features(schedule, weather, outcomes, planes, weather_max_age_hours=3,
                               default_delay_rate=0.2, default_mean_arr_delay=0.0)

Inputs are pandas frames with the raw zone's columns and dtypes (jobs.validation.RAW_DTYPES:
`flight_date` as datetime.date, `time_hour` as a UTC timestamp) and the planes reference
table; the result has the declared columns in the declared order, one row per scheduled
flight, sorted by the flight key.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from jobs.feeds import DELAYED_MINUTES

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "config" / "features.yaml"  # tests/oracles/ -> the repo root

# US federal holidays of 2013 and 2014 (OPM's published list; none moved to an observed day).
HOLIDAYS = tuple(dt.date.fromisoformat(d) for d in (
    "2013-01-01", "2013-01-21", "2013-02-18", "2013-05-27", "2013-07-04",
    "2013-09-02", "2013-10-14", "2013-11-11", "2013-11-28", "2013-12-25",
    "2014-01-01", "2014-01-20", "2014-02-17", "2014-05-26", "2014-07-04",
    "2014-09-01", "2014-10-13", "2014-11-11", "2014-11-27", "2014-12-25",
))
WINDOWS = (7, 28)
GROUPS = ("carrier", "origin", "route", "tailnum")
MEASUREMENTS = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")
SORT = ["flight_date", "origin", "sched_dep_time", "carrier", "flight"]


def declared_columns() -> list[str]:
    return [c["name"] for c in yaml.safe_load(SCHEMA_FILE.read_text())["columns"]]


def _days(values: pd.Series) -> pd.Series:
    """Calendar dates as day numbers (days since 1970-01-01)."""
    return (pd.to_datetime(values) - pd.Timestamp("1970-01-01")).dt.days


def reference_features(
    schedule: pd.DataFrame,
    weather: pd.DataFrame,
    outcomes: pd.DataFrame,
    planes: pd.DataFrame,
    *,
    weather_max_age_hours: float,
    default_delay_rate: float,
    default_mean_arr_delay: float,
    holidays: tuple[dt.date, ...] = HOLIDAYS,
) -> pd.DataFrame:
    flights = schedule.reset_index(drop=True).copy()
    flights["_day"] = _days(flights["flight_date"])

    # Schedule and calendar.
    flights["route"] = flights["origin"].astype(str) + "-" + flights["dest"].astype(str)
    flights["sched_dep_hour"] = flights["hour"]
    flights["day_of_week"] = pd.to_datetime(flights["flight_date"]).dt.dayofweek + 1
    holiday_days = _days(pd.Series(holidays)).to_numpy()
    flights["days_to_nearest_holiday"] = np.abs(flights["_day"].to_numpy()[:, None] - holiday_days[None, :]).min(axis=1)
    flights["origin_hour_departures"] = flights.groupby(["flight_date", "origin", "hour"])["flight"].transform("size")

    # Planes.
    table = planes[["tailnum", "year", "seats", "engine"]].drop_duplicates("tailnum").rename(
        columns={"year": "_built", "seats": "plane_seats", "engine": "plane_engine"})
    table["plane_known"] = True
    flights = flights.merge(table, on="tailnum", how="left")
    flights["plane_known"] = flights["plane_known"].notna()
    flights["plane_age"] = pd.to_datetime(flights["flight_date"]).dt.year - flights["_built"]

    # Weather: the last observation of the same date's feed at or before the scheduled hour.
    obs = weather[["origin", "flight_date", "time_hour", *MEASUREMENTS]].rename(columns={"flight_date": "_obs_date"})
    obs = obs.assign(_obs_time=obs["time_hour"], _obs_day=_days(obs["_obs_date"])).drop(columns="_obs_date")
    left = flights.assign(_obs_day=flights["_day"]).sort_values("time_hour", kind="stable")
    matched = pd.merge_asof(
        left, obs.sort_values("time_hour", kind="stable"), on="time_hour", by=["origin", "_obs_day"],
        direction="backward", allow_exact_matches=True, tolerance=pd.Timedelta(hours=weather_max_age_hours),
    )
    flights = matched.sort_index()
    flights["weather_available"] = flights["_obs_time"].notna()
    flights["weather_age_hours"] = (flights["time_hour"] - flights["_obs_time"]).dt.total_seconds() / 3600.0

    # History: for each flight date, the outcomes of the days before it.
    past = outcomes.copy()
    past["_day"] = _days(past["flight_date"])
    past["route"] = past["origin"].astype(str) + "-" + past["dest"].astype(str)
    pieces = []
    for day, group in flights.groupby("_day", sort=True):
        group = group.copy()
        longest = past[(past["_day"] >= day - max(WINDOWS)) & (past["_day"] <= day - 1)]
        group["history_days_available"] = longest["_day"].nunique()
        for window in WINDOWS:
            seen = past[(past["_day"] >= day - window) & (past["_day"] <= day - 1) & past["arr_delay"].notna()]
            delayed = seen["arr_delay"] >= DELAYED_MINUTES
            overall_rate = delayed.mean() if len(seen) else default_delay_rate
            overall_mean = seen["arr_delay"].mean() if len(seen) else default_mean_arr_delay
            for key in GROUPS:
                stats = seen.assign(_delayed=delayed).groupby(key).agg(
                    _n=("arr_delay", "size"), _rate=("_delayed", "mean"), _mean=("arr_delay", "mean"))
                n = group[key].map(stats["_n"]).fillna(0).astype(int)
                group[f"{key}_flights_{window}d"] = n
                group[f"{key}_delay_rate_{window}d"] = np.where(n > 0, group[key].map(stats["_rate"]), overall_rate)
                group[f"{key}_mean_arr_delay_{window}d"] = np.where(n > 0, group[key].map(stats["_mean"]), overall_mean)
        pieces.append(group)
    flights = pd.concat(pieces, ignore_index=True) if pieces else flights.assign(history_days_available=0)

    columns = declared_columns()
    for column in columns:  # an empty day still has every column
        if column not in flights:
            flights[column] = pd.Series(dtype="float64")
    return flights[columns].sort_values(SORT, kind="stable").reset_index(drop=True)
