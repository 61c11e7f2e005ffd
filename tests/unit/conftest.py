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


def settings_with(tracking_uri: str, lake_root: str, **sections):
    """Local settings pointed at a test's MLflow and lake, with some section fields changed:
    settings_with(uri, root, training={"validation_days": 2})."""
    from jobs.settings import load_settings

    base = load_settings("local")
    update = {"mlflow": base.mlflow.model_copy(update={"tracking_uri": tracking_uri}),
              "lake": base.lake.model_copy(update={"root": lake_root})}
    for name, fields in sections.items():
        update[name] = getattr(base, name).model_copy(update=fields)
    return base.model_copy(update=update)


@pytest.fixture(scope="session")
def served_model(tmp_path_factory, spark):
    """A lake with real features of 2013-01-01..08 and an MLflow (SQLite) whose `flight_delay@champion` is an
    HGB model trained by jobs.train on Jan 1-5 (holdout Jan 6), with its drift reference.

    Returns a dict: lake_root, tracking_uri, version, run_id. Tests copy the lake before writing to it.
    """
    import datetime as dt

    from mlflow import MlflowClient

    from jobs.features import compute_features
    from jobs.lake import Lake
    from jobs.registry import promote
    from jobs.train import TrainRequest, train_candidate
    from jobs.training_set import Windows
    from tests.realdata import write_raw_days

    root = tmp_path_factory.mktemp("served")
    lake = Lake(str(root / "lake"))
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    settings = settings_with(tracking_uri, lake.root, training={"validation_days": 2})
    client = MlflowClient(tracking_uri)
    # Artifacts under the test's folder (a SQLite backend's default is ./mlruns in the working directory).
    for experiment in (settings.training.experiment, settings.monitoring.experiment):
        client.create_experiment(experiment, artifact_location=(root / "artifacts" / experiment).as_uri())
    write_raw_days(lake, dt.date(2013, 1, 1), 8)
    compute_features(lake, dt.date(2013, 1, 1), 8, settings=settings, spark=spark)
    windows = Windows(dt.date(2013, 1, 1), dt.date(2013, 1, 5), dt.date(2013, 1, 6), dt.date(2013, 1, 6))
    result = train_candidate(TrainRequest(windows, "sklearn_hgb", 1, 1024, 0.01, 13, False, "unit test"),
                             settings=settings, lake=lake)
    promote(client, settings.mlflow.model_name, result["model_version"], "unit test")
    return {"lake_root": lake.root, "tracking_uri": tracking_uri, "version": result["model_version"],
            "run_id": result["run_id"], "settings": settings}


def health_lake(served_model: dict, root, spark) -> dict:
    """A copy of the served lake and MLflow that every part of the model-health view has something in:
    the champion's model card (jobs.evaluate), Jan 6-7 scored (jobs.score) and monitored (jobs.monitor),
    and one weather row of Jan 8 quarantined (jobs.ingest of a corrupted delivery)."""
    import datetime as dt
    import shutil

    from jobs.evaluate import evaluate_version
    from jobs.ingest import ingest_feed
    from jobs.lake import Lake
    from jobs.monitor import monitor_date
    from jobs.score import score_dates
    from jobs.upstream.publish import publish

    shutil.copytree(served_model["lake_root"], root / "lake")
    shutil.copy(served_model["tracking_uri"].removeprefix("sqlite:///"), root / "mlflow.db")
    lake, uri = Lake(str(root / "lake")), f"sqlite:///{root / 'mlflow.db'}"
    settings = settings_with(uri, lake.root)
    evaluate_version(served_model["version"], settings=settings, lake=lake)
    score_dates(lake, dt.date(2013, 1, 6), 2, settings=settings, spark=spark)
    for day in (dt.date(2013, 1, 6), dt.date(2013, 1, 7)):
        monitor_date(lake, day, settings=settings)
    publish(lake, dt.date(2013, 1, 8), feeds=("weather",), corrupt_kind="bad_values", corrupt_rows=1, redeliver=True)
    ingest_feed(lake, "weather", "2013-01-08", settings)
    return {"lake": lake, "settings": settings, "tracking_uri": uri, "version": served_model["version"]}


@pytest.fixture(scope="session")
def health_data(served_model, tmp_path_factory, spark):
    """`health_lake` once per session (tests that write to it copy it first)."""
    return health_lake(served_model, tmp_path_factory.mktemp("health"), spark)


_TRACKING_URI_AT_START = os.environ.get("MLFLOW_TRACKING_URI")


@pytest.fixture(autouse=True)
def _keep_the_tracking_uri_of_the_environment():
    """mlflow.set_tracking_uri (jobs.train, jobs.backtest; also inside session fixtures, set up before this
    one) writes MLFLOW_TRACKING_URI into os.environ, where the settings of every later test would read it:
    after each test the variable is what it was when the session started."""
    yield
    before = _TRACKING_URI_AT_START
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
