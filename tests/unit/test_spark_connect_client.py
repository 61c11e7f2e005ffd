"""jobs.spark's Spark Connect client: a server that does not answer fails the step at once, naming it."""
from __future__ import annotations

import socket
import time

import pytest

from jobs.spark import SparkUnavailable, require_listening, spark_session


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_server_that_does_not_answer_fails_the_session_at_once_naming_it():
    from jobs.settings import SparkSettings, get_settings

    remote = f"sc://127.0.0.1:{_free_port()}"
    settings: SparkSettings = get_settings().spark.model_copy(update={"remote": remote})
    started = time.monotonic()
    with pytest.raises(SparkUnavailable, match=f"the Spark Connect server {remote} does not answer"):
        spark_session("test", settings)
    assert time.monotonic() - started < 10, "pyspark's own policy would have retried for 10 minutes"


def test_a_listening_server_passes_the_probe():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        require_listening(f"sc://127.0.0.1:{server.getsockname()[1]}/;user_id=x")
