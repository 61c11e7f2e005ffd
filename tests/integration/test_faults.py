"""Faults with real processes: a writing step killed with SIGKILL at any moment leaves no partial partition
visible, and its rerun writes exactly what an undisturbed run writes.

`python -m jobs.ingest` runs as Airflow runs it (a process of its own), on a day upstream delivered; it is
killed after a series of delays that fall before, during and after each feed's validation and write. After
every kill each visible partition (one with a manifest) must read whole, with the rows its manifest states;
then a rerun completes and every raw partition holds the same rows as a run nobody disturbed (checksums).
"""
from __future__ import annotations

import datetime as dt

import pytest

from jobs.lake import Lake, raw_key
from jobs.upstream.publish import publish
from tests.crash import checksum, finish, kill_after, start_step, step_env, visible_partitions_are_whole

pytestmark = pytest.mark.integration

DAY = dt.date(2013, 1, 5)
FEEDS = ("schedule", "weather", "flights")
DELAYS_S = (0.5, 3.0, 5.5, 7.5, 9.5, 11.5)


def _ingest(lake: Lake):
    return start_step("jobs.ingest", ["--ds", DAY.isoformat()], step_env(lake.root))


def _keys() -> list[str]:
    return [raw_key(feed, DAY.isoformat()) for feed in FEEDS]


@pytest.mark.timeout(600)
def test_ingest_killed_at_any_moment_leaves_no_partial_partition_and_its_rerun_is_identical(tmp_path):
    reference = Lake(str(tmp_path / "reference"))
    publish(reference, DAY)
    code, err = finish(_ingest(reference), timeout=300)
    assert code == 0, err
    expected = {key: checksum(reference, key) for key in _keys()}

    lake = Lake(str(tmp_path / "faulty"))
    publish(lake, DAY)
    visible_after_kill = []
    for delay in DELAYS_S:
        kill_after(_ingest(lake), delay)
        visible_after_kill.append(len(visible_partitions_are_whole(lake, _keys())))
    # The kills landed at different stages: before any feed was published and after some were.
    assert visible_after_kill[0] == 0 and max(visible_after_kill) > 0, visible_after_kill

    code, err = finish(_ingest(lake), timeout=300)
    assert code == 0, err
    assert {key: checksum(lake, key) for key in _keys()} == expected
    assert not lake.list("quarantine"), "a killed run quarantines nothing"
