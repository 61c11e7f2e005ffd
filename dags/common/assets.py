"""The Assets that link the DAGs: one per lake dataset, named once here.

Asset events carry the flight date as their partition key and a small `extra`
(partition URI, row counts, warnings): references, never data.
"""
from __future__ import annotations

from pathlib import Path

from airflow.sdk import Asset

from common.config import settings


def _dataset_uri(dataset: str) -> str:
    root = settings().lake_root
    if "://" in root:
        return f"{root}/{dataset}"
    return Path(root, dataset).as_uri()


def raw_asset(feed: str) -> Asset:
    return Asset(name=f"raw_{feed}", uri=_dataset_uri(f"raw/{feed}"), group="lake")


def features_asset() -> Asset:
    return Asset(name="features_flights", uri=_dataset_uri("features/flights"), group="lake")


def predictions_asset() -> Asset:
    return Asset(name="predictions_flight_delay", uri=_dataset_uri("predictions/flight_delay"), group="lake")
