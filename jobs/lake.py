"""The lake: zones, partition keys and atomic, idempotent reads and writes.

Keys are POSIX paths relative to the lake root (`raw/schedule/date=2013-01-05`).
The root is a local directory or `s3://bucket/prefix`; both backends offer the
same few primitives (get, atomic put, list, delete) and everything else is built
on them, so the same tests run against both.

A partition is a folder of data files plus `_manifest.json`. Writing one puts
files under fresh names, then the manifest (one atomic put: the commit point),
then deletes files the manifest no longer lists. Readers go through the
manifest, so they see the old partition or the new one, never a mix, and a
failed write leaves the previous good partition in place.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol

if TYPE_CHECKING:  # pandas is imported lazily: DAG files import this module at parse.
    from collections.abc import Sequence

    import pandas as pd
    import pyarrow as pa

MANIFEST = "_manifest.json"
ZONES = ("landing", "raw", "quarantine", "features", "predictions", "reports")


class LakeError(RuntimeError):
    """A lake operation failed; the message names the key."""


class PartitionNotFound(LakeError):
    pass


# Key helpers: the one place the lake layout of DESIGN.md is spelled out.
def landing_key(feed: str, ds: str) -> str:
    return f"landing/{feed}/{ds}.csv"


def reference_key(table: str) -> str:
    return f"landing/reference/{table}.csv"


def partition_key(zone: str, dataset: str, ds: str) -> str:
    if zone not in ZONES:
        raise ValueError(f"unknown lake zone {zone!r} (known: {', '.join(ZONES)})")
    return f"{zone}/{dataset}/date={ds}"


def raw_key(feed: str, ds: str) -> str:
    return partition_key("raw", feed, ds)


def quarantine_key(feed: str, ds: str) -> str:
    return partition_key("quarantine", feed, ds)


def report_key(kind: str, *parts: str) -> str:
    return "/".join(("reports", kind, *parts))


class _Store(Protocol):
    def get(self, key: str) -> bytes: ...
    def put(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, keys: Iterable[str]) -> None: ...
    def uri(self, key: str) -> str: ...


class _LocalStore:
    def __init__(self, root: str):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise LakeError(f"no such object: {self.uri(key)}") from None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write aside in the same directory, then rename: readers never see half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; lake files are read by other services
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root)).replace(os.sep, "/")
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")
        )

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)


class _S3Store:
    def __init__(self, root: str, endpoint_url: str | None):
        import boto3  # light enough, but only S3 lakes need it

        without_scheme = root[len("s3://"):]
        self.bucket, _, prefix = without_scheme.partition("/")
        if not self.bucket:
            raise LakeError(f"lake root {root!r} names no bucket")
        self.prefix = prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise LakeError(f"no such object: {self.uri(key)}") from None

    def put(self, key: str, data: bytes) -> None:
        # A single PUT is atomic in S3: readers see the old object or the new one.
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix).rstrip("/") + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete(self, keys: Iterable[str]) -> None:
        batch = [{"Key": self._key(k)} for k in keys]
        for start in range(0, len(batch), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch[start:start + 1000]})


@dataclass(frozen=True)
class Partition:
    key: str
    uri: str
    files: tuple[str, ...]
    rows: int
    metadata: dict[str, Any]


def _to_parquet(frame: "pd.DataFrame") -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    buffer = io.BytesIO()
    # Spark rejects nanosecond timestamps: write microseconds.
    pq.write_table(table, buffer, coerce_timestamps="us", allow_truncated_timestamps=True)
    return buffer.getvalue()


class Lake:
    """The data lake rooted at a local directory or an `s3://bucket/prefix` URI."""

    def __init__(self, root: str, s3_endpoint_url: str | None = None):
        # Look at the scheme before stripping slashes: "s3://" must not become a local "s3:".
        is_s3 = root.startswith("s3://")
        self.root = root.rstrip("/")
        self._store: _Store = _S3Store(root, s3_endpoint_url) if is_s3 else _LocalStore(self.root)

    @classmethod
    def from_settings(cls, settings: Any = None) -> "Lake":
        if settings is None:
            from jobs.settings import get_settings

            settings = get_settings()
        return cls(settings.lake_root, settings.lake.s3_endpoint_url)

    @property
    def is_s3(self) -> bool:
        return isinstance(self._store, _S3Store)

    def uri(self, key: str) -> str:
        return self._store.uri(key)

    # Objects ---------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self._store.exists(key)

    def read_bytes(self, key: str) -> bytes:
        return self._store.get(key)

    def write_bytes(self, key: str, data: bytes) -> str:
        self._store.put(key, data)
        return self.uri(key)

    def write_text(self, key: str, text: str) -> str:
        return self.write_bytes(key, text.encode("utf-8"))

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def write_json(self, key: str, payload: Any) -> str:
        return self.write_text(key, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")

    def list(self, prefix: str) -> list[str]:
        return self._store.list(prefix)

    def write_tree(self, prefix: str, local_dir: Path, replace: bool = False) -> int:
        """Upload every file under `local_dir` below `prefix` (reports, data docs).

        With `replace`, objects under `prefix` that `local_dir` lacks are deleted afterwards,
        so a rerun leaves exactly the new tree.
        """
        written: set[str] = set()
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(local_dir).as_posix()}"
                self.write_bytes(key, path.read_bytes())
                written.add(key)
        if replace:
            self._store.delete([key for key in self._store.list(prefix) if key not in written])
        return len(written)

    # Partitions ------------------------------------------------------------
    def partition_dates(self, prefix: str) -> set[dt.date]:
        """The flight dates of the committed partitions under `prefix` (e.g. `features/flights/`)."""
        found = set()
        for key in self.list(prefix):
            part = key[len(prefix):].split("/", 1)[0]
            if part.startswith("date=") and key.endswith(f"/{MANIFEST}"):
                found.add(dt.date.fromisoformat(part[5:]))
        return found

    def partition_exists(self, key: str) -> bool:
        return self._store.exists(f"{key}/{MANIFEST}")

    def read_manifest(self, key: str) -> dict[str, Any]:
        if not self.partition_exists(key):
            raise PartitionNotFound(f"partition {self.uri(key)} does not exist (no {MANIFEST})")
        return self.read_json(f"{key}/{MANIFEST}")

    def write_partition(self, key: str, frame: "pd.DataFrame", metadata: dict[str, Any] | None = None) -> Partition:
        """Replace the partition at `key` with `frame`, atomically."""
        write_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        name = f"part-00000-{write_id}.parquet"
        try:
            data = _to_parquet(frame)
        except (ValueError, TypeError) as exc:  # pyarrow's ArrowInvalid / ArrowTypeError
            raise LakeError(f"cannot write partition {self.uri(key)}: {exc}") from exc
        self._store.put(f"{key}/{name}", data)
        manifest = {
            "files": [name],
            "rows": int(len(frame)),
            "columns": [str(c) for c in frame.columns],
            "written_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "write_id": write_id,
            "metadata": metadata or {},
        }
        self._store.put(f"{key}/{MANIFEST}", json.dumps(manifest, indent=2, default=str).encode())
        stale = [k for k in self._store.list(key) if k.rsplit("/", 1)[-1] not in (MANIFEST, name)]
        self._store.delete(stale)
        return Partition(key, self.uri(key), (name,), manifest["rows"], manifest["metadata"])

    def read_table(self, key: str, columns: "Sequence[str] | None" = None) -> "tuple[pa.Table, dict[str, Any]]":
        """The partition's committed files (as its manifest lists them) as one Arrow table, and the manifest."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        manifest = self.read_manifest(key)
        tables = [pq.read_table(io.BytesIO(self._store.get(f"{key}/{name}")), columns=list(columns) if columns else None)
                  for name in manifest["files"]]
        return (pa.concat_tables(tables) if len(tables) > 1 else tables[0]), manifest

    def read_partition(self, key: str) -> "pd.DataFrame":
        return self.read_table(key)[0].to_pandas()

    def partition(self, key: str) -> Partition:
        manifest = self.read_manifest(key)
        return Partition(key, self.uri(key), tuple(manifest["files"]), manifest["rows"], manifest.get("metadata", {}))
