"""Unit-test fixtures: one local SparkSession for the whole test session."""
from __future__ import annotations

import logging
import os
import sys

import pytest

from tests.realdata import raw_frame


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


@pytest.fixture(scope="session")
def raw_frames():
    """jobs' raw-zone frames of real days: raw_frames(feed, first, last=None) -> pandas.DataFrame."""
    return raw_frame
