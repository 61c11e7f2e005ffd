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


def test_the_python_daemon_of_a_released_session_is_stopped_only_if_it_is_that_sessions():
    """jobs.spark.release_session(python_workers=True) stops the daemon its session's workers name (pid + UUID)."""
    import os
    import subprocess
    import sys

    from jobs.spark import stop_python_daemon

    env = {**os.environ, "SPARK_JOB_ARTIFACT_UUID": "93bf92ad-2757-47fd-89af-d07513b6c594"}
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        time.sleep(0.2)
        assert not stop_python_daemon("another-session", daemon.pid), "a pid reused by another process is left alone"
        assert daemon.poll() is None
        assert stop_python_daemon("93bf92ad-2757-47fd-89af-d07513b6c594", daemon.pid)
        assert daemon.wait(timeout=10) != 0
        assert not stop_python_daemon("93bf92ad-2757-47fd-89af-d07513b6c594", 2**22 + 1), "no such process here"
    finally:
        daemon.kill()


def _driver_memory(command: list[str]) -> str:
    return command[command.index("--driver-memory") + 1]


def test_the_stacks_connect_server_gets_4g_of_heap_unless_spark_connect_memory_says_otherwise():
    """Two 11-month training sets at once (the year replay beside its report) failed at 2g with "Java heap space"."""
    from scripts.stack.config import SPARK_CONNECT, StackConfig

    default = StackConfig.local({})
    assert _driver_memory(default.commands()[SPARK_CONNECT]) == "4g"
    bigger = StackConfig.local({"SPARK_CONNECT_MEMORY": "6g"})
    assert _driver_memory(bigger.commands()[SPARK_CONNECT]) == "6g"
