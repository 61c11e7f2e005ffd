"""Real days of the source as the pipeline's zones hold them, for tests that need many days fast."""
from __future__ import annotations


def raw_frame(feed: str, first, last=None):
    """What ingestion writes to raw for a good delivery of `feed`, for flight dates first..last (real data).

    The publisher's CSV, read back the way validation reads it, with the raw zone's dtypes:
    the same bytes-to-Parquet path as jobs.ingest minus the GX checks (which good days pass),
    so tests that need many real days do not pay GX for each.
    """
    import datetime as dt
    import io

    import pandas as pd

    from jobs.upstream.publish import feed_frame
    from jobs.validation import CSV_OPTIONS, to_raw_dtypes

    last = last or first
    frames = []
    for offset in range((last - first).days + 1):
        day = first + dt.timedelta(days=offset)
        data = feed_frame(feed, day).to_csv(index=False).encode("utf-8")
        frame = pd.read_csv(io.BytesIO(data), **CSV_OPTIONS)
        frame["flight_date"] = day.isoformat()
        frames.append(to_raw_dtypes(frame, feed))
    return pd.concat(frames, ignore_index=True)


def write_raw_days(lake, first, days: int) -> None:
    """Raw partitions of every feed for `days` dates from `first`, and the reference tables (no GX: see raw_frame)."""
    import datetime as dt

    from jobs.lake import raw_key
    from jobs.upstream.publish import publish

    publish(lake, first, feeds=())  # reference tables only
    for offset in range(days):
        day = first + dt.timedelta(days=offset)
        for feed in ("schedule", "weather", "flights"):
            lake.write_partition(raw_key(feed, day.isoformat()), raw_frame(feed, day), {"status": "passed"})
