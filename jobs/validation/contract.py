"""The raw zone's contract per feed: statuses, check levels, CSV reading options, derived columns, Parquet dtypes.

Good rows come out with Parquet-ready dtypes (`RAW_DTYPES`): whole numbers as int64, or
nullable Int64 where a value may be empty (dep_time and arr_time of cancelled flights);
measurements (delays, air time, weather) as float64; codes as pandas strings;
`time_hour` as a UTC timestamp; `flight_date` kept as a real date column (Spark reads it
as DateType); `matches_schedule` dropped.
"""
from __future__ import annotations

import pandas as pd

from jobs.feeds import COLUMNS

PASSED = "passed"
QUARANTINED = "passed_with_quarantined_rows"
REJECTED = "rejected"
STATUSES = (PASSED, QUARANTINED, REJECTED)

FILE, ROW, WARNING = "file", "row", "warning"

CSV_OPTIONS = {"keep_default_na": False, "na_values": [""], "low_memory": False}
FLIGHT_DATE = "flight_date"
MATCHES_SCHEDULE = "matches_schedule"
# What an outcome must share with its scheduled flight.
SCHEDULE_MATCH_COLUMNS = ("sched_dep_time", "sched_arr_time", "dest", "distance")
DERIVED = {"schedule": (FLIGHT_DATE,), "weather": (FLIGHT_DATE,), "flights": (FLIGHT_DATE, MATCHES_SCHEDULE)}

_SCHEDULE_DTYPES = {
    "year": "int64", "month": "int64", "day": "int64", "sched_dep_time": "int64", "sched_arr_time": "int64",
    "carrier": "string", "flight": "int64", "tailnum": "string", "origin": "string", "dest": "string",
    "distance": "int64", "hour": "int64", "minute": "int64", "time_hour": "timestamp",
}
RAW_DTYPES: dict[str, dict[str, str]] = {
    "schedule": _SCHEDULE_DTYPES,
    "flights": {
        **_SCHEDULE_DTYPES,
        "dep_time": "Int64", "arr_time": "Int64",
        "dep_delay": "float64", "arr_delay": "float64", "air_time": "float64",
    },
    "weather": {
        "origin": "string", "year": "int64", "month": "int64", "day": "int64", "hour": "int64",
        **{c: "float64" for c in ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust",
                                  "precip", "pressure", "visib")},
        "time_hour": "timestamp",
    },
}
# Columns of the raw partition, in order: the feed's columns, then the flight date.
RAW_COLUMNS = {feed: (*COLUMNS[feed], FLIGHT_DATE) for feed in COLUMNS}


def to_raw_dtypes(frame: pd.DataFrame, feed: str) -> pd.DataFrame:
    """Good rows with the dtypes of the raw zone (see this module's docstring)."""
    out = pd.DataFrame(index=frame.index)
    for column in RAW_COLUMNS[feed]:
        if column == FLIGHT_DATE:
            out[column] = pd.to_datetime(frame[column], format="%Y-%m-%d").dt.date
            continue
        dtype = RAW_DTYPES[feed][column]
        if dtype == "timestamp":
            out[column] = pd.to_datetime(frame[column], utc=True, format="%Y-%m-%dT%H:%M:%SZ")
        elif dtype == "string":
            out[column] = frame[column].astype("string")
        else:
            out[column] = frame[column].astype(dtype)
    return out.reset_index(drop=True)
