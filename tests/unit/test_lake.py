"""The lake on both backends: a local directory and S3 (moto's server over HTTP)."""
from __future__ import annotations

import io
import json
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.lake import (
    MANIFEST,
    ZONES,
    Lake,
    LakeError,
    PartitionNotFound,
    landing_key,
    partition_key,
    quarantine_key,
    raw_key,
    reference_key,
    report_key,
)
from jobs.settings import load_settings


def sample_frame(day: int = 1, rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "carrier": [f"C{day}{i}" for i in range(rows)],
        "flight": pd.Series(range(rows), dtype="int64") + 100 * day,
        "dep_delay": [1.5 * i for i in range(rows)],
        "time_hour": pd.date_range(f"2013-01-{day:02d} 05:00", periods=rows, freq="h"),
    })


def partition_files(lake: Lake, key: str) -> dict[str, bytes]:
    return {k: lake.read_bytes(k) for k in lake.list(key)}


def parquet_schema(lake: Lake, key: str) -> pa.Schema:
    (name,) = lake.partition(key).files
    return pq.read_schema(io.BytesIO(lake.read_bytes(f"{key}/{name}")))


# Key helpers -------------------------------------------------------------------------

def test_key_helpers_follow_the_design_layout():
    assert landing_key("schedule", "2013-01-05") == "landing/schedule/2013-01-05.csv"
    assert landing_key("flights", "2013-01-04") == "landing/flights/2013-01-04.csv"
    assert reference_key("planes") == "landing/reference/planes.csv"
    assert raw_key("weather", "2013-01-05") == "raw/weather/date=2013-01-05"
    assert quarantine_key("flights", "2013-01-05") == "quarantine/flights/date=2013-01-05"
    assert partition_key("features", "flights", "2013-01-05") == "features/flights/date=2013-01-05"
    assert partition_key("predictions", "flight_delay", "2013-01-05") == "predictions/flight_delay/date=2013-01-05"
    assert report_key("validation", "schedule", "2013-01-05.json") == "reports/validation/schedule/2013-01-05.json"
    assert set(ZONES) == {"landing", "raw", "quarantine", "features", "predictions", "reports"}


@pytest.mark.parametrize("zone", ["rawdata", "Raw", "", "staging"])
def test_unknown_zone_is_rejected(zone):
    with pytest.raises(ValueError, match="unknown lake zone"):
        partition_key(zone, "flights", "2013-01-05")


# Objects ---------------------------------------------------------------------------

def test_bytes_roundtrip_and_exists(lake):
    key = "landing/schedule/2013-01-01.csv"
    assert not lake.exists(key)
    uri = lake.write_bytes(key, b"a,b\n1,2\n")
    assert uri == lake.uri(key)
    assert uri.endswith(key)
    assert uri.startswith("s3://") == lake.is_s3
    assert lake.exists(key)
    assert lake.read_bytes(key) == b"a,b\n1,2\n"
    lake.write_bytes(key, b"replaced\n")
    assert lake.read_bytes(key) == b"replaced\n"
    assert not lake.exists("landing/schedule")  # a folder is not an object


def test_reading_a_missing_object_names_it(lake):
    with pytest.raises(LakeError) as caught:
        lake.read_bytes("landing/flights/2013-01-01.csv")
    assert lake.uri("landing/flights/2013-01-01.csv") in str(caught.value)


def test_list_returns_keys_under_a_prefix_only(lake):
    for key in ("raw/a/date=1/x", "raw/a/date=1/sub/y", "raw/a/date=10/z", "raw/ab/w", "landing/q"):
        lake.write_bytes(key, key.encode())
    assert lake.list("raw/a/date=1") == ["raw/a/date=1/sub/y", "raw/a/date=1/x"]
    assert lake.list("raw/a/date=1/") == ["raw/a/date=1/sub/y", "raw/a/date=1/x"]
    assert lake.list("raw/a") == ["raw/a/date=1/sub/y", "raw/a/date=1/x", "raw/a/date=10/z"]
    assert lake.list("raw") == ["raw/a/date=1/sub/y", "raw/a/date=1/x", "raw/a/date=10/z", "raw/ab/w"]
    assert lake.list("nothing/here") == []


def test_json_roundtrip(lake):
    payload = {"success": False, "failed": ["row_count", "columns"], "fraction": 0.25, "nested": {"n": 3}}
    lake.write_json("reports/validation/schedule/2013-01-01.json", payload)
    assert lake.read_json("reports/validation/schedule/2013-01-01.json") == payload
    raw = lake.read_bytes("reports/validation/schedule/2013-01-01.json").decode("utf-8")
    assert json.loads(raw) == payload


def test_write_tree_uploads_a_folder(lake, tmp_path):
    site = tmp_path / "site"
    (site / "static" / "css").mkdir(parents=True)
    (site / "index.html").write_text("<html>index</html>")
    (site / "static" / "css" / "style.css").write_text("body {}")
    (site / "empty-dir").mkdir()
    assert lake.write_tree("reports/validation/docs", site) == 2
    assert lake.list("reports/validation/docs") == [
        "reports/validation/docs/index.html",
        "reports/validation/docs/static/css/style.css",
    ]
    assert lake.read_bytes("reports/validation/docs/static/css/style.css") == b"body {}"


# Partitions ------------------------------------------------------------------------

def test_partition_roundtrip(lake):
    key = raw_key("schedule", "2013-01-01")
    frame = sample_frame()
    written = lake.write_partition(key, frame, metadata={"source": "landing/schedule/2013-01-01.csv"})
    assert written.key == key
    assert written.uri == lake.uri(key)
    assert written.rows == 3
    assert lake.partition_exists(key)

    back = lake.read_partition(key)
    assert list(back.columns) == list(frame.columns)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert str(back["flight"].dtype) == "int64"
    assert str(back["carrier"].dtype) in ("object", "string", "str")

    described = lake.partition(key)
    assert described.files == written.files
    assert described.rows == 3
    assert described.metadata == {"source": "landing/schedule/2013-01-01.csv"}
    manifest = lake.read_manifest(key)
    assert manifest["columns"] == ["carrier", "flight", "dep_delay", "time_hour"]
    assert sorted(lake.list(key)) == sorted([f"{key}/{MANIFEST}", f"{key}/{written.files[0]}"])


def test_timestamps_are_written_as_microseconds_for_spark(lake):
    key = partition_key("features", "flights", "2013-01-01")
    frame = sample_frame().assign(
        time_hour_utc=pd.date_range("2013-01-01 05:00", periods=3, freq="h", tz="UTC"),
        precise=pd.to_datetime(["2013-01-01 10:00:00.123456789"] * 3),
    )
    assert str(frame["time_hour"].dtype) == "datetime64[ns]"  # pandas' default: Spark cannot read it
    lake.write_partition(key, frame)
    schema = parquet_schema(lake, key)
    assert schema.field("time_hour").type == pa.timestamp("us")
    assert schema.field("time_hour_utc").type == pa.timestamp("us", tz="UTC")
    assert schema.field("precise").type == pa.timestamp("us")
    back = lake.read_partition(key)
    assert back["time_hour"].tolist() == frame["time_hour"].tolist()
    assert back["time_hour_utc"].tolist() == frame["time_hour_utc"].tolist()
    assert back["precise"][0] == pd.Timestamp("2013-01-01 10:00:00.123456")  # truncated to us


def test_empty_partition_keeps_its_columns(lake):
    key = quarantine_key("flights", "2013-01-01")
    lake.write_partition(key, sample_frame().iloc[0:0])
    back = lake.read_partition(key)
    assert back.empty
    assert list(back.columns) == ["carrier", "flight", "dep_delay", "time_hour"]
    assert lake.partition(key).rows == 0


def test_rerun_replaces_the_partition_and_nothing_else(lake):
    key, neighbour = raw_key("flights", "2013-01-02"), raw_key("flights", "2013-01-03")
    first = lake.write_partition(key, sample_frame(day=2, rows=5))
    lake.write_partition(neighbour, sample_frame(day=3, rows=4))
    neighbour_before = partition_files(lake, neighbour)
    other_zone = lake.write_partition(quarantine_key("flights", "2013-01-02"), sample_frame(day=2, rows=1))
    lake.write_bytes("landing/flights/2013-01-02.csv", b"landed\n")

    replacement = sample_frame(day=2, rows=2).assign(flight=[7, 8])
    second = lake.write_partition(key, replacement)

    assert second.files != first.files
    assert not lake.exists(f"{key}/{first.files[0]}")  # the old data file is gone
    assert lake.list(key) == sorted([f"{key}/{MANIFEST}", f"{key}/{second.files[0]}"])
    back = lake.read_partition(key)
    assert back["flight"].tolist() == [7, 8]  # rows of the new frame only
    assert lake.partition(key).rows == 2
    assert partition_files(lake, neighbour) == neighbour_before
    assert lake.read_partition(quarantine_key("flights", "2013-01-02"))["flight"].tolist() == [200]
    assert lake.partition(quarantine_key("flights", "2013-01-02")).files == other_zone.files
    assert lake.read_bytes("landing/flights/2013-01-02.csv") == b"landed\n"


def test_missing_partition_raises_naming_the_uri(lake):
    key = raw_key("weather", "2013-02-01")
    assert not lake.partition_exists(key)
    with pytest.raises(PartitionNotFound) as caught:
        lake.read_partition(key)
    assert lake.uri(key) in str(caught.value)
    assert isinstance(caught.value, LakeError)
    with pytest.raises(PartitionNotFound):
        lake.partition(key)


def test_data_files_without_a_manifest_are_not_a_partition(lake):
    """A writer that died before its manifest (the commit point) leaves no partition."""
    key = raw_key("weather", "2013-02-02")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2]}), buffer)
    lake.write_bytes(f"{key}/part-00000-orphan.parquet", buffer.getvalue())
    assert not lake.partition_exists(key)
    with pytest.raises(PartitionNotFound):
        lake.read_partition(key)


def test_orphan_file_of_a_dead_writer_is_ignored_then_cleaned(lake):
    key = raw_key("weather", "2013-02-03")
    lake.write_partition(key, sample_frame(rows=2))
    buffer = io.BytesIO()
    pq.write_table(pa.table({"carrier": ["ORPHAN"]}), buffer)
    lake.write_bytes(f"{key}/part-00000-orphan.parquet", buffer.getvalue())
    assert "ORPHAN" not in lake.read_partition(key)["carrier"].tolist()  # readers follow the manifest
    written = lake.write_partition(key, sample_frame(rows=1))
    assert lake.list(key) == sorted([f"{key}/{MANIFEST}", f"{key}/{written.files[0]}"])


@pytest.mark.parametrize("bad_column", [
    pytest.param([1, "x", 2.5], id="int-and-str"),
    pytest.param([{"a": 1}, "x", None], id="dict-and-str"),
    pytest.param([object(), 1, 2], id="opaque-object"),
])
def test_failed_write_leaves_the_previous_partition(lake, bad_column):
    key = raw_key("schedule", "2013-01-04")
    good = sample_frame(day=4)
    lake.write_partition(key, good, metadata={"run": "good"})
    before = partition_files(lake, key)

    with pytest.raises(LakeError, match=r"cannot write partition .*date=2013-01-04.*column carrier"):
        lake.write_partition(key, good.assign(carrier=bad_column), metadata={"run": "bad"})

    assert partition_files(lake, key) == before  # nothing added, nothing removed, nothing rewritten
    pd.testing.assert_frame_equal(lake.read_partition(key), good, check_dtype=False)
    assert lake.partition(key).metadata == {"run": "good"}


def test_local_writes_leave_no_temporary_files(local_lake, tmp_path):
    local_lake.write_partition(raw_key("schedule", "2013-01-01"), sample_frame())
    local_lake.write_bytes("landing/schedule/2013-01-01.csv", b"x")
    leftovers = [p for p in (tmp_path / "lake").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


# Construction ----------------------------------------------------------------------

def test_lake_at_the_root_of_a_bucket(s3_endpoint):
    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    lake = Lake(f"s3://{bucket}/", s3_endpoint_url=s3_endpoint)
    key = raw_key("schedule", "2013-01-01")
    lake.write_partition(key, sample_frame())
    assert lake.uri(key) == f"s3://{bucket}/{key}"
    assert lake.list("raw") == sorted(lake.list(key))
    assert len(lake.read_partition(key)) == 3


def test_s3_root_without_a_bucket_is_rejected():
    with pytest.raises(LakeError, match="names no bucket"):
        Lake("s3://")


def test_lake_from_settings_follows_lake_root(monkeypatch, tmp_path, s3_endpoint):
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "from-env"))
    lake = Lake.from_settings(load_settings("local"))
    assert not lake.is_s3
    lake.write_bytes("landing/reference/airlines.csv", b"carrier,name\n")
    assert (tmp_path / "from-env" / "landing" / "reference" / "airlines.csv").read_bytes() == b"carrier,name\n"

    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    monkeypatch.setenv("LAKE_ROOT", f"s3://{bucket}/prod")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # boto3's own variable: settings name no endpoint
    lake = Lake.from_settings(load_settings("production"))
    assert lake.is_s3
    assert lake.write_bytes("landing/reference/airlines.csv", b"x") == f"s3://{bucket}/prod/landing/reference/airlines.csv"
    body = boto3.client("s3", endpoint_url=s3_endpoint).get_object(Bucket=bucket, Key="prod/landing/reference/airlines.csv")
    assert body["Body"].read() == b"x"
