"""The OpenLineage datasets of a step's results: what it wrote, and what those writes read.

Airflow's OpenLineage provider asks each task for its inputs and outputs when it completes; the step
operators answer with this (dags/common/operators.py). The graph is the one `python -m jobs.lineage`
walks, read from the same records: the partitions a step reports in its STEP_RESULT lines are its
outputs, and their manifests name what each write read (a raw partition its landing file, a features
partition its raw partitions, a training set its features and labels, predictions their features and
model version). A model version is a dataset too, in the namespace of the MLflow server that holds it:
`train` writes it, `score`, `monitor` and `evaluate` read it.

Naming follows OpenLineage's dataset naming: `s3://bucket` and the object key, or `file` and the path.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from jobs.lake import Lake, LakeError

log = logging.getLogger(__name__)

# Result fields that name a partition or report the step wrote.
OUTPUT_FIELDS = ("raw_uri", "quarantine_uri", "features_uri", "train_uri", "holdout_uri", "predictions_uri",
                 "report_uri")

Dataset = tuple[str, str]  # (namespace, name)


@dataclass
class StepLineage:
    inputs: list[Dataset] = field(default_factory=list)
    outputs: list[Dataset] = field(default_factory=list)

    def add(self, side: list[Dataset], dataset: Dataset | None) -> None:
        if dataset is not None and dataset not in side:
            side.append(dataset)


def dataset_of_uri(uri: str) -> Dataset:
    """OpenLineage's (namespace, name) of a lake URI: an object store's bucket and key, or a local path."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return "file", parts.path
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def model_dataset(tracking_uri: str, name: str, version: str | int) -> Dataset:
    """A registered model version as a dataset of the MLflow server that holds it."""
    parts = urlsplit(tracking_uri)
    namespace = f"mlflow://{parts.netloc}" if parts.netloc else f"mlflow:{tracking_uri}"
    return namespace, f"models/{name}/versions/{version}"


def _key_of(lake: Lake, uri: str) -> str | None:
    """The lake key of a URI this lake made, or None when it lies elsewhere."""
    prefix = lake.uri("x")[:-1]
    return uri[len(prefix):] if uri.startswith(prefix) else None


def _read_from_manifest(lake: Lake, key: str) -> list[str]:
    """The lake keys a partition's write read, as its manifest recorded them ([] for a report, not a partition)."""
    try:
        metadata = lake.read_manifest(key).get("metadata", {})
    except LakeError:
        return []
    except Exception as exc:  # noqa: BLE001 - lineage must never fail a step that succeeded
        log.warning("lineage: could not read the manifest of %s (%s); its inputs are left out", key, exc)
        return []
    keys: list[str] = []
    if metadata.get("landing_key"):  # a raw partition: its landing file
        keys.append(metadata["landing_key"])
    keys.extend(metadata.get("inputs", {}) if isinstance(metadata.get("inputs"), dict) else ())  # features: raw
    features = metadata.get("features")
    if isinstance(features, dict):
        keys.extend([features["key"]] if "key" in features else features)  # predictions: one; a training set: many
    if isinstance(metadata.get("labels"), dict):
        keys.extend(metadata["labels"])
    return [key for key in keys if isinstance(key, str)]


def step_lineage(results: list[dict[str, Any]], lake: Lake, tracking_uri: str, model_name: str) -> StepLineage:
    """Inputs and outputs of one run of a step, from its STEP_RESULT payloads."""
    from jobs.training_set import SPLITS, training_set_key

    lineage = StepLineage()
    for result in results:
        for name in OUTPUT_FIELDS:
            uri = result.get(name)
            if not isinstance(uri, str) or not uri:
                continue
            lineage.add(lineage.outputs, dataset_of_uri(uri))
            key = _key_of(lake, uri)
            for read in _read_from_manifest(lake, key) if key else ():
                lineage.add(lineage.inputs, dataset_of_uri(lake.uri(read)))
        version = result.get("model_version")
        if version is None:
            continue
        model = model_dataset(tracking_uri, result.get("model_name") or model_name, version)
        if result.get("set_id") and result.get("run_id"):  # train: the version it registered, from its set
            lineage.add(lineage.outputs, model)
            for split in SPLITS:
                lineage.add(lineage.inputs, dataset_of_uri(lake.uri(training_set_key(result["set_id"], split))))
        else:  # score, monitor, evaluate, promote: the version they used
            lineage.add(lineage.inputs, model)
        if "drift_share" in result and result.get("ds"):  # monitor: the day's predictions and features
            from jobs.features import features_key
            from jobs.score import predictions_key

            for read in (predictions_key(result["ds"]), features_key(result["ds"])):
                lineage.add(lineage.inputs, dataset_of_uri(lake.uri(read)))
    return lineage
