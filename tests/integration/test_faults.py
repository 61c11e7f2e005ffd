"""Faults with real processes: a writing step killed with SIGKILL at any moment leaves no partial partition
visible, and its rerun writes exactly what an undisturbed run writes.

`python -m jobs.ingest` runs as Airflow runs it (a process of its own), on a day upstream delivered; it is
killed after a series of delays that fall before, during and after each feed's validation and write. After
every kill each visible partition (one with a manifest) must read whole, with the rows its manifest states;
then a rerun completes and every raw partition holds the same rows as a run nobody disturbed (checksums).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from jobs.lake import Lake, raw_key
from jobs.upstream.publish import publish

pytestmark = pytest.mark.integration

DAY = dt.date(2013, 1, 5)
FEEDS = ("schedule", "weather", "flights")
DELAYS_S = (0.5, 3.0, 5.5, 7.5, 9.5, 11.5)


def _ingest(lake: Lake) -> subprocess.Popen:
    env = {**os.environ, "LAKE_ROOT": lake.root, "PIPELINE_ENV": "local"}
    return subprocess.Popen([sys.executable, "-m", "jobs.ingest", "--ds", DAY.isoformat()], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _checksum(lake: Lake, key: str) -> str:
    frame = lake.read_partition(key)
    frame = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def _visible_partitions_are_whole(lake: Lake) -> int:
    seen = 0
    for feed in FEEDS:
        key = raw_key(feed, DAY.isoformat())
        if lake.partition_exists(key):
            manifest = lake.read_manifest(key)
            assert len(lake.read_partition(key)) == manifest["rows"], f"{key} is partial"
            seen += 1
    return seen


@pytest.mark.timeout(600)
def test_ingest_killed_at_any_moment_leaves_no_partial_partition_and_its_rerun_is_identical(tmp_path):
    reference = Lake(str(tmp_path / "reference"))
    publish(reference, DAY)
    clean = _ingest(reference)
    assert clean.wait(timeout=300) == 0, clean.stderr.read()
    expected = {feed: _checksum(reference, raw_key(feed, DAY.isoformat())) for feed in FEEDS}

    lake = Lake(str(tmp_path / "faulty"))
    publish(lake, DAY)
    visible_after_kill = []
    for delay in DELAYS_S:
        process = _ingest(lake)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        visible_after_kill.append(_visible_partitions_are_whole(lake))
    # The kills landed at different stages: before any feed was published and after some were.
    assert visible_after_kill[0] == 0 and max(visible_after_kill) > 0, visible_after_kill

    rerun = _ingest(lake)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    assert {feed: _checksum(lake, raw_key(feed, DAY.isoformat())) for feed in FEEDS} == expected
    assert not lake.list("quarantine"), "a killed run quarantines nothing"
