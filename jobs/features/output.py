"""The features partitions: where they live, their lineage and fingerprint, and their checked, atomic write.

Output: `features/flights/date={ds}/`, replaced atomically by `Lake.write_partition`, after
the frame's schema is checked against the declared one (a mismatch fails, naming each
column). Its metadata records every input read (raw partition keys with their manifest
write_id, the planes file's sha256), what was missing, the schema version, the code
version (sha256 of the modules of this package; the git commit when there is one), the
parameters and a `fingerprint` over all of these: same fingerprint, same features. A day
whose schedule has no rows writes an empty partition with the full schema.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from jobs.features.inputs import FeatureInputs, InputLineage, outcome_days
from jobs.features.params import FeatureParams
from jobs.features.schema import FeatureSchema, check_schema
from jobs.lake import Lake, PartitionNotFound, partition_key, raw_key, reference_key

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import DataFrame

DATASET = "flights"
# Row order of a features partition (unique: the flight key is within it).
OUTPUT_ORDER = ("flight_date", "origin", "sched_dep_time", "carrier", "flight")
PACKAGE_DIR = Path(__file__).resolve().parent


def features_key(ds: str) -> str:
    return partition_key("features", DATASET, ds)


@lru_cache(maxsize=1)
def code_version() -> dict[str, str | None]:
    """sha256 of this package's modules (what the features are computed by) and, when known, the git commit.

    Every module of jobs/features/, by file name in sorted order, name and content: editing,
    adding, removing or renaming any of them changes the version, and so every fingerprint.
    """
    digest = hashlib.sha256()
    for module in sorted(PACKAGE_DIR.glob("*.py"), key=lambda path: path.name):
        source = module.read_bytes()
        digest.update(f"{module.name}\0{len(source)}\0".encode() + source)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None  # an image without .git: the modules' hash is what counts
    return {"code_version": f"sha256:{digest.hexdigest()[:16]}", "git_commit": commit}


def partition_metadata(ds: str, inputs: "FeatureInputs | InputLineage", lookback_days: int, params: FeatureParams,
                       schema: FeatureSchema, earliest: dt.date | None = None) -> dict[str, Any]:
    """Lineage of one date's partition, with the fingerprint of everything its features depend on."""
    day = dt.date.fromisoformat(ds)
    own = [raw_key("schedule", ds), raw_key("weather", ds)] + [
        raw_key("flights", d.isoformat()) for d in outcome_days(day, lookback_days, earliest)
    ]
    read = {key: inputs.write_ids[key] for key in own if key in inputs.write_ids}
    missing = [key for key in own if key in inputs.missing]
    versions = code_version()
    fingerprinted = {
        "inputs": read, reference_key("planes"): f"sha256:{inputs.planes_sha256}", "missing": missing,
        "feature_schema": [schema.version, schema.sha256], "code_version": versions["code_version"],
        "params": params.to_json(), "lookback_days": lookback_days,
    }
    fingerprint = hashlib.sha256(json.dumps(fingerprinted, sort_keys=True).encode()).hexdigest()
    outcome_keys = [k for k in own if k.startswith("raw/flights/")]
    return {
        "ds": ds,
        "inputs": read,
        "reference": {reference_key("planes"): f"sha256:{inputs.planes_sha256}"},
        "missing_inputs": missing,
        "outcome_days_read": sum(k in read for k in outcome_keys),
        "outcome_days_missing": sum(k in missing for k in outcome_keys),
        "lookback_days": lookback_days,
        "feature_schema_version": schema.version,
        "feature_schema_sha256": schema.sha256,
        **versions,
        "params": params.to_json(),
        "fingerprint": fingerprint,
    }


def write_features(lake: Lake, features: "DataFrame", dates: Iterable[dt.date],
                   metadata: dict[str, dict[str, Any]], schema: FeatureSchema) -> dict[str, Any]:
    """Collect `features`, check them against the declared schema, then replace one partition per date
    (empty if no flight); nothing is written unless the schema matches.

    One Spark action: the schema is read from the collected Arrow table, not asked of Spark
    (a round trip that analyses the whole plan again under Spark Connect), and the rows are
    put in OUTPUT_ORDER on the driver, not by a Spark sort (a sampling job and a shuffle).
    """
    import pyarrow.compute as pc
    from pyspark.sql.pandas.types import from_arrow_schema

    table = features.toArrow()
    check_schema(from_arrow_schema(table.schema), schema)
    table = table.sort_by([(column, "ascending", "at_start") for column in OUTPUT_ORDER])  # Spark's ASC NULLS FIRST
    written = {}
    for day in dates:
        ds = day.isoformat()
        rows = table.filter(pc.equal(table["flight_date"], day))
        written[ds] = lake.write_partition(features_key(ds), _to_pandas(rows), metadata[ds])
    return written


def _to_pandas(table: "pa.Table") -> "pd.DataFrame":
    """pandas nullable dtypes that Lake's Parquet writer maps back to exactly the declared types.

    Integers stay integers with nulls (Int32), booleans stay booleans; dates are Arrow-backed
    so that an empty day still writes a date column, not an untyped one.
    """
    import pandas as pd
    import pyarrow as pa

    mapping = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(),
               pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype(),
               pa.date32(): pd.ArrowDtype(pa.date32())}
    return table.to_pandas(types_mapper=mapping.get)


def current_fingerprint(lake: Lake, ds: str) -> str | None:
    """The fingerprint recorded by the features partition of `ds`, or None when there is none."""
    try:
        return lake.read_manifest(features_key(ds)).get("metadata", {}).get("fingerprint")
    except PartitionNotFound:
        return None
