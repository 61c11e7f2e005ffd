"""The S3 endpoint stopped mid-write: a lake on S3 (moto's server over HTTP, a process of its own) behind the
endpoint the step talks to (tests/faults/s3_front.py), which dies with SIGKILL the moment `jobs.ingest` puts its
first partition manifest, after that partition's data file.

The step fails with a retryable exit code and a message naming the endpoint and the object it could not
write; once the endpoint is back nothing is half-written (no manifest without its data, no partition visible
that is not whole) and a rerun publishes every feed whole.
"""
from __future__ import annotations

import datetime as dt
import uuid

import boto3
import pytest

from jobs.lake import MANIFEST, Lake, raw_key
from jobs.results import EXIT_REJECTED, EXIT_SKIPPED, EXIT_USAGE
from jobs.upstream.publish import publish
from tests.crash import KILLED, data_files, run_step, step_env, visible_partitions_are_whole
from tests.faults.services import S3_CREDENTIALS, moto_service, s3_front_service

pytestmark = pytest.mark.faults

DAY = "2013-01-05"
FEEDS = ("schedule", "weather", "flights")


def _manifests_have_their_data(lake: Lake) -> int:
    manifests = [key for key in lake.list("raw") if key.endswith(f"/{MANIFEST}")]
    for key in manifests:
        partition = key.rsplit("/", 1)[0]
        for name in lake.read_json(key)["files"]:
            assert lake.exists(f"{partition}/{name}"), f"{key} lists {name}, which is not there"
    return len(manifests)


@pytest.mark.timeout(900)
def test_s3_endpoint_killed_mid_partition_write(tmp_path, monkeypatch):
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    moto, moto_endpoint = moto_service(tmp_path / "moto")
    with moto:
        bucket = f"lake-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
        lake = Lake(f"s3://{bucket}/pipeline", s3_endpoint_url=moto_endpoint)  # the test's view: moto itself
        publish(lake, dt.date.fromisoformat(DAY))
        keys = [raw_key(feed, DAY) for feed in FEEDS]

        front, endpoint = s3_front_service(tmp_path / "front", moto_endpoint, die_at=MANIFEST)
        env = step_env(lake.root, AWS_ENDPOINT_URL=endpoint, **S3_CREDENTIALS)
        with front:
            code, err = run_step("jobs.ingest", ["--ds", DAY], env, timeout=600)
            assert front.process.poll() == KILLED, "the endpoint did not die at a manifest"
        assert code not in (0, KILLED, EXIT_USAGE, EXIT_REJECTED, EXIT_SKIPPED), f"exit {code}:\n{err}"
        assert endpoint in err and MANIFEST in err, f"the failure names neither the endpoint nor the object:\n{err}"

        # What the endpoint stored before it died: a data file, no manifest; nothing a reader takes as a partition.
        assert visible_partitions_are_whole(lake, keys) == []
        assert any(data_files(lake, key) for key in keys), "no data file was written before the endpoint died"
        assert _manifests_have_their_data(lake) == 0

        front, endpoint = s3_front_service(tmp_path / "front", moto_endpoint)
        with front:
            code, err = run_step("jobs.ingest", ["--ds", DAY], {**env, "AWS_ENDPOINT_URL": endpoint}, timeout=600)
        assert code == 0, err
        assert visible_partitions_are_whole(lake, keys) == keys
        assert _manifests_have_their_data(lake) == 3
        assert not lake.list("quarantine")
