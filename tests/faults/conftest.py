"""Fault-test fixtures: the unit tests' real lake and registry (`served_model`: features of Jan 1-8 2013 built by
Spark, a champion trained by jobs.train), copied by each test before it breaks anything."""
from __future__ import annotations

import shutil

import pytest

from tests.unit.conftest import served_model, settings_with, spark  # noqa: F401 - fixtures, shared


@pytest.fixture
def served_copy(served_model, tmp_path):  # noqa: F811 - the imported fixture
    """A copy of the served lake and of its MLflow (SQLite) registry, for a test to write to."""
    from jobs.lake import Lake

    shutil.copytree(served_model["lake_root"], tmp_path / "lake")
    db = tmp_path / "mlflow.db"
    shutil.copy(served_model["tracking_uri"].removeprefix("sqlite:///"), db)
    uri = f"sqlite:///{db}"
    return {"lake": Lake(str(tmp_path / "lake")), "tracking_uri": uri, "db": db, "version": served_model["version"],
            "settings": settings_with(uri, str(tmp_path / "lake"))}
