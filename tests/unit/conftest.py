"""Unit-test fixtures: one local SparkSession for the whole test session."""
from __future__ import annotations

import logging
import os
import sys

import pytest


@pytest.fixture(scope="session")
def spark():
    """A light local SparkSession (2 cores, 4 shuffle partitions, no UI), started once.

    Built by jobs.spark like every step's session, so tests run with the UTC session zone
    and Arrow conversion the jobs rely on.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from jobs.settings import SparkSettings
    from jobs.spark import spark_session

    session = spark_session("unit-tests", SparkSettings(master="local[2]", driver_memory="1g", shuffle_partitions=4,
                                                        ui_enabled=False))
    yield session
    session.stop()
    # py4j logs its shutdown after pytest has closed the captured streams: keep it quiet.
    logging.getLogger("py4j").setLevel(logging.WARNING)


def raw_frame(feed: str, first, last=None):
    """What ingestion writes to raw for a good delivery of `feed`, for flight dates first..last (real data).

    The publisher's CSV, read back the way validation reads it, with the raw zone's dtypes:
    the same bytes-to-Parquet path as jobs.ingest minus the GX checks (which good days pass),
    so tests that need many real days do not pay GX for each.
    """
    import datetime as dt
    import io

    import pandas as pd

    from jobs.publish import feed_frame
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


@pytest.fixture(scope="session")
def raw_frames():
    """jobs' raw-zone frames of real days: raw_frames(feed, first, last=None) -> pandas.DataFrame."""
    return raw_frame
