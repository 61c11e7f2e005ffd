"""Real days of the source for the benchmarks: raw-zone frames of a date range, built fast (no GX)."""
from __future__ import annotations

import datetime as dt
import io

import pandas as pd


def raw_frames(first: dt.date, last: dt.date) -> dict[str, pd.DataFrame]:
    """Raw-zone frames of every feed for flight dates first..last, and the planes table."""
    from jobs.features import read_planes
    from jobs.feeds import COLUMNS, SOURCE_TABLE
    from jobs.upstream.publish import source_table
    from jobs.validation import CSV_OPTIONS, FLIGHT_DATE, to_raw_dtypes

    frames = {}
    for feed in ("schedule", "weather", "flights"):
        table = source_table(SOURCE_TABLE[feed])
        rows = table[(table["_date"] >= first) & (table["_date"] <= last)]
        data = rows[list(COLUMNS[feed])].to_csv(index=False).encode("utf-8")
        frame = pd.read_csv(io.BytesIO(data), **CSV_OPTIONS)
        frame[FLIGHT_DATE] = [d.isoformat() for d in rows["_date"]]
        frames[feed] = to_raw_dtypes(frame, feed)
    frames["planes"] = read_planes(source_table("planes").to_csv(index=False).encode("utf-8"))
    return frames
