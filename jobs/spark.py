"""The one way a step gets its SparkSession.

    from jobs.spark import spark_session
    spark = spark_session("features")

Configuration comes from `spark` in the settings (master, driver memory,
shuffle partitions, UI, extra `spark.*` properties). Two properties are fixed here
because the code depends on them, not because they are tunables:
- `spark.sql.session.timeZone=UTC`: the lake's timestamps (`time_hour`) are UTC and
  flight dates are calendar dates; a JVM in another zone would shift both.
- Arrow for pandas <-> Spark conversion: inputs arrive from the lake as pandas frames.

With `master: null` the session takes its master from spark-submit or the Spark
operator (production); locally it is `local[2]`. With `remote: sc://host:port` the step
is a Spark Connect client of a long-lived server (the local stack's): the session costs
~0.5 s instead of a JVM start, which is what makes a backfill of daily runs cheap; the
jobs only use the DataFrame API, which both kinds of session share. The environment
variable SPARK_REMOTE (Spark's own) also selects Connect. The driver binds to loopback in local
mode and the Python workers use this interpreter, so a venv needs no PYSPARK_PYTHON.

`getOrCreate` semantics: a second call in the same process returns the running session
(that is how a range of dates, or a test session, pays the JVM start once).
pyspark is imported inside the function: DAG files may import jobs modules at parse.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pyspark.sql import SparkSession

    from jobs.settings import SparkSettings

log = logging.getLogger("jobs.spark")

# Defaults the settings may override: Python workers forked from a daemon that has the scoring
# libraries imported already (jobs/spark_worker.py), instead of importing them per task.
WORKER_CONF = {"spark.python.daemon.module": "jobs.spark_worker"}
# How many spark_session() calls of this process hold each Connect session: getOrCreate hands a step
# that runs inside another (a training set built for a report's backtest) the caller's session, which
# only the last release may stop.
_HOLDERS: dict[int, int] = {}
FIXED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}


def session_conf(settings: "SparkSettings") -> dict[str, str]:
    """Every property the session is built with (master excluded)."""
    conf = {
        **WORKER_CONF,
        "spark.driver.memory": settings.driver_memory,
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.ui.enabled": str(settings.ui_enabled).lower(),
        **settings.conf,
    }
    overridden = sorted(set(conf) & set(FIXED_CONF))
    if overridden:
        raise ValueError(f"spark.conf may not set {overridden}: the jobs rely on their fixed values")
    return {**conf, **FIXED_CONF}


def spark_session(app_name: str, settings: "SparkSettings | None" = None) -> "SparkSession":
    """The process's SparkSession, started with the configured properties if none runs yet."""
    if settings is None:
        from jobs.settings import get_settings

        settings = get_settings().spark
    if settings.remote:
        spark = _connect_session(app_name, settings.remote)
        _HOLDERS[id(spark)] = _HOLDERS.get(id(spark), 0) + 1
        return spark
    local = settings.master is not None and settings.master.startswith("local")
    # Workers must run the interpreter that has pyspark and the jobs package (the venv's).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(f"flight-delay-{app_name}")
    if settings.master is not None:
        builder = builder.master(settings.master)
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("Spark %s session %s (master %s)", spark.version, spark.sparkContext.applicationId,
             spark.sparkContext.master)
    return spark


@contextlib.contextmanager
def step_session(app_name: str, settings: "SparkSettings | None" = None, spark: "SparkSession | None" = None,
                 python_workers: bool = False) -> "Iterator[SparkSession]":
    """The caller's session (`spark`), or this step's own, released when the block ends (`release_session`)."""
    if spark is not None:
        yield spark
        return
    own = spark_session(app_name, settings)
    try:
        yield own
    finally:
        release_session(own, python_workers=python_workers)


def release_session(spark: "SparkSession", python_workers: bool = False) -> None:
    """Release a Spark Connect client session on its server; leave an in-process session running.

    The server keeps a client's session, with the plans it cached (and the local data in
    them), until the session idles out (an hour by default), even after the client process
    has exited: a step run once per day, each run a new process, would pile them up until
    the server's heap is full. An in-process session ends with its process, and tests share
    one: it is not stopped.

    `python_workers` (a step that ran Python UDFs: scoring, backtests): the server also keeps
    the Python worker daemon it started for the session (Spark Connect isolates each session's
    workers, and nothing stops them when the session ends), with the scoring libraries it
    preloaded (jobs/spark_worker.py): about 450 MB each. Seen in a year replay on the local
    stack: 52 daemons after 30 minutes, 0.8 GB of 24 GB left. When that server runs on this
    host (the local stack), the daemon of this session is stopped too, after the session.
    """
    if not type(spark).__module__.startswith("pyspark.sql.connect"):
        return
    holders = _HOLDERS.pop(id(spark), 1)
    if holders > 1:  # getOrCreate gave this step the session of a caller in this process (a report's backtests)
        _HOLDERS[id(spark)] = holders - 1
        return
    daemon = _session_python_daemon(spark) if python_workers else None
    spark.stop()
    if daemon:
        stop_python_daemon(*daemon)


def _session_python_daemon(spark: "SparkSession") -> tuple[str, int] | None:
    """(artifact UUID, pid) of this session's Python worker daemon, asked of one of its workers."""
    from pyspark.sql.functions import udf

    def whose(_: int) -> str:
        import os as worker_os

        return f"{worker_os.environ.get('SPARK_JOB_ARTIFACT_UUID', '')} {worker_os.getppid()}"

    try:
        uuid, pid = spark.range(1).select(udf(whose, "string")("id")).first()[0].split(" ")
        return (uuid, int(pid)) if uuid else None
    except Exception as exc:  # noqa: BLE001 - a cleanup: the step's own work is done
        log.warning("could not ask the Spark Connect server for this session's Python daemon: %s", exc)
        return None


def stop_python_daemon(uuid: str, pid: int) -> bool:
    """Stop the Python worker daemon `pid` if it runs here and serves the session `uuid` (its workers go with it)."""
    import signal

    try:
        environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return False  # the server runs on another host, or the daemon is gone already
    if f"SPARK_JOB_ARTIFACT_UUID={uuid}".encode() not in environ:
        return False  # another process took the pid: not ours to stop
    os.kill(pid, signal.SIGTERM)  # pyspark's daemon stops its workers (SIGHUP to its group) and exits
    log.info("stopped the Python worker daemon %d of the released Spark Connect session", pid)
    return True


class SparkUnavailable(RuntimeError):
    """The Spark Connect server does not answer: a retry (Airflow's) helps once it is back."""


def require_listening(remote: str, timeout_s: float = 5.0) -> None:
    """Fail at once, naming the server, when nothing listens at `remote` (sc://host:port).

    pyspark creates a session under its default retry policy, which tries an unreachable server for
    10 minutes before the step's own policy (below) applies: a step started while the server was down
    (it was killed, out of memory) held its task 10 minutes in the year replay.
    """
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(remote)
    host, port = address.hostname or "localhost", address.port or 15002
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise SparkUnavailable(f"the Spark Connect server {remote} does not answer ({exc}): start it (the local "
                               "stack does) or fix spark.remote in the settings") from None


def _connect_session(app_name: str, remote: str) -> "SparkSession":
    """A Spark Connect client session; the server owns master, memory and the fixed properties' defaults."""
    from pyspark.sql import SparkSession

    require_listening(remote)
    spark = SparkSession.builder.remote(remote).appName(f"flight-delay-{app_name}").getOrCreate()
    # Session-level SQL properties can be set per client; the server's JVM settings cannot.
    # (Arrow is always on in Connect; the time zone is a per-session property.)
    spark.conf.set("spark.sql.session.timeZone", FIXED_CONF["spark.sql.session.timeZone"])
    # pyspark's default policy retries an unreachable server for at least 10 minutes (15 tries); a server killed
    # mid-job held the step 14+ minutes before it failed. Fail within about half a minute instead and let
    # Airflow retry with its backoff, where the attempt and the error are visible (tests/faults/).
    from pyspark.sql.connect.client.retries import DefaultPolicy

    spark.client.set_retry_policies([DefaultPolicy(max_retries=6, max_backoff=10_000)])
    log.info("Spark %s Connect session at %s", spark.version, remote)
    return spark
