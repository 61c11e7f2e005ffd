"""The Spark Connect server killed (SIGKILL) mid-job: the local stack's server (scripts/stack/config.py's
command), `jobs.features` its client as the stack's tasks are (PIPELINE__SPARK__REMOTE). Killed once the step's
session is up, the step fails within minutes with a retryable exit code and writes nothing; once the server is back the
retry writes the partition an undisturbed run writes (checksum).
"""
from __future__ import annotations

import time

import pytest

from jobs.features import features_key
from jobs.lake import Lake
from jobs.results import EXIT_REJECTED, EXIT_SKIPPED, EXIT_USAGE
from tests.crash import KILLED, checksum, finish, read_until, run_step, start_step, step_env, visible_partitions_are_whole
from tests.faults.services import spark_connect_service

pytestmark = pytest.mark.faults

DAY = "2013-01-08"


@pytest.mark.timeout(2400)
def test_spark_connect_killed_mid_job(served_copy, served_model, tmp_path):
    key = features_key(DAY)
    expected = checksum(Lake(served_model["lake_root"]), key)
    lake = served_copy["lake"]
    lake._store.delete(lake.list(key))
    server, remote = spark_connect_service(tmp_path / "spark")
    env = step_env(lake.root, PIPELINE__SPARK__REMOTE=remote)
    args = ["--ds", DAY, "--force"]
    with server:
        process = start_step("jobs.features", args, env)
        read_until(process, "Spark session started")
        server.kill()
        started = time.monotonic()
        code, err = finish(process, timeout=1200)
        failed_after = time.monotonic() - started
        assert code not in (0, KILLED, EXIT_USAGE, EXIT_REJECTED, EXIT_SKIPPED), f"exit {code}:\n{err}"
        assert visible_partitions_are_whole(lake, [key]) == []
        # Promptly: pyspark's default retries of an unreachable server held the step 14+ minutes (jobs/spark.py).
        assert failed_after < 240, f"the step failed only {failed_after:.0f} s after the server was killed"
        server.start()
        code, err = run_step("jobs.features", args, env)
        assert code == 0, err
    assert visible_partitions_are_whole(lake, [key]) == [key]
    assert checksum(lake, key) == expected
