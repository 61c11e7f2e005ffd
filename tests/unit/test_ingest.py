"""jobs.ingest against a real lake on both backends (local directory, S3 over HTTP via moto's server).

Real GX, real Parquet, real S3 API: what is asserted is what lands in the lake.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io

import pandas as pd
import pytest

from jobs.upstream import corrupt
from jobs.ingest import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, IngestInputError, ingest_feed, main
from jobs.lake import Lake, landing_key, quarantine_key, raw_key, report_key
from jobs.upstream.publish import feed_frame, publish
from jobs.results import parse_results
from jobs.settings import load_settings

DAY = dt.date(2013, 1, 5)
DS = DAY.isoformat()


@pytest.fixture(scope="module")
def settings():
    return load_settings("local")


def deliver(lake: Lake, feed: str, kind: str | None = None, rows: int | None = None, day: dt.date = DAY) -> bytes:
    """Upstream delivers (or redelivers) one feed file; returns the bytes that landed."""
    publish(lake, day, feeds=(feed,), corrupt_kind=kind, corrupt_rows=rows, redeliver=True)
    return lake.read_bytes(landing_key(feed, day.isoformat()))


def attempts(lake: Lake, feed: str) -> dict[str, list[str]]:
    """Quarantine attempt folder -> file names in it."""
    found: dict[str, list[str]] = {}
    for key in lake.list(quarantine_key(feed, DS)):
        folder, name = key.rsplit("/", 1)
        found.setdefault(folder, []).append(name)
    return found


def test_good_day_publishes_every_feed_with_lineage_and_data_docs(lake, settings):
    landed = {feed: deliver(lake, feed) for feed in ("schedule", "weather", "flights")}
    for feed in ("schedule", "weather", "flights"):  # flights last: checked against the schedule
        result = ingest_feed(lake, feed, DS, settings)
        assert result.status == "passed", result.message
        assert result.rows == result.rows_read == len(feed_frame(feed, DAY))
        assert result.quarantine_uri is None and result.failures == [] and result.quarantined_rows == 0
        assert result.raw_uri == lake.uri(raw_key(feed, DS))
        partition = lake.partition(raw_key(feed, DS))
        assert partition.rows == result.rows
        assert partition.metadata["sha256"] == hashlib.sha256(landed[feed]).hexdigest()
        assert partition.metadata["landing_key"] == landing_key(feed, DS)
        assert partition.metadata["status"] == "passed"
        reports = lake.list(report_key("validation", feed, f"date={DS}"))
        assert result.report_uri == lake.uri(report_key("validation", feed, f"date={DS}", "index.html"))
        assert any(k.endswith("/validation_result.json") for k in reports)
        assert any("/validations/" in k and k.endswith(".html") for k in reports)
        assert lake.list(quarantine_key(feed, DS)) == []
        assert lake.read_bytes(landing_key(feed, DS)) == landed[feed]
    frame = lake.read_partition(raw_key("flights", DS))
    assert frame["flight_date"].iloc[0] == DAY
    assert str(frame["dep_time"].dtype) == "Int64"

    # A rerun replaces the partition and the report: one data file, one validation page.
    again = ingest_feed(lake, "schedule", DS, settings)
    assert again.status == "passed"
    assert len(lake.partition(raw_key("schedule", DS)).files) == 1
    parquet = [k for k in lake.list(raw_key("schedule", DS)) if k.endswith(".parquet")]
    assert len(parquet) == 1
    pages = [k for k in lake.list(report_key("validation", "schedule", f"date={DS}")) if "/validations/" in k]
    assert len(pages) == 1


# Weather where it serves (its suite runs fastest); tests/unit/test_validation.py covers the other feeds.
KIND_FEED = {
    "missing_column": "weather", "extra_column": "weather", "wrong_type": "schedule", "empty_file": "weather",
    "header_only": "schedule", "truncated": "weather", "other_date": "weather", "duplicates": "weather",
    "bad_values": "weather", "unknown_code": "weather", "non_utf8": "weather", "schedule_mismatch": "flights",
}
KIND_CHECK = {
    "missing_column": "expect_table_columns_to_match_set: missing [temp]",
    "extra_column": "expect_table_columns_to_match_set: unknown [gate_id]",
    "wrong_type": "expect_column_values_to_be_in_type_list(distance)",
    "empty_file": "file_not_empty",
    "header_only": "expect_table_row_count_to_be_between: 0 rows",
    "truncated": "file_is_complete: upload looks incomplete",
    "other_date": "expect_column_values_to_be_in_set(flight_date)",
    "duplicates": "expect_compound_columns_to_be_unique(origin, time_hour)",
    "bad_values": "expect_column_values_to_be_between(wind_speed)",
    "unknown_code": "expect_column_values_to_be_in_set(origin)",
    "non_utf8": "file_is_utf8: not UTF-8",
    "schedule_mismatch": "expect_column_values_to_be_in_set(matches_schedule)",
}


def test_every_corruption_kind_has_a_case():
    assert set(KIND_FEED) == set(KIND_CHECK) == set(corrupt.KINDS)


# Every kind on the local lake; on S3 one of each path (before GX, file-level GX, row-level GX).
SWEEP = [("local", kind) for kind in sorted(corrupt.KINDS)] + [
    ("s3", kind) for kind in ("non_utf8", "missing_column", "schedule_mismatch")
]


@pytest.mark.parametrize("backend, kind", SWEEP, ids=[f"{b}-{k}" for b, k in SWEEP])
def test_bad_delivery_is_rejected_and_quarantined_whole(request, settings, backend, kind):
    lake = request.getfixturevalue(f"{backend}_lake")
    feed = KIND_FEED[kind]
    if feed == "flights":
        deliver(lake, "schedule")
        assert ingest_feed(lake, "schedule", DS, settings).status == "passed"
    landed = deliver(lake, feed, kind)

    result = ingest_feed(lake, feed, DS, settings)

    assert result.status == "rejected"
    assert KIND_CHECK[kind] in result.message
    assert any(KIND_CHECK[kind] in failure for failure in result.failures)
    assert result.raw_uri is None and result.rows == 0
    assert not lake.partition_exists(raw_key(feed, DS))
    assert lake.read_bytes(landing_key(feed, DS)) == landed
    (folder, names), = attempts(lake, feed).items()
    assert folder.startswith(f"{quarantine_key(feed, DS)}/attempt=")
    assert folder.endswith(hashlib.sha256(landed).hexdigest()[:8])
    assert result.quarantine_uri == lake.uri(folder)
    assert {"source.csv", "validation.json"} <= set(names)
    assert lake.read_bytes(f"{folder}/source.csv") == landed
    record = lake.read_json(f"{folder}/validation.json")
    assert record["status"] == "rejected" and record["message"] == result.message
    assert any(KIND_CHECK[kind] in f"{f['check']}: {f['detail']}" for f in record["failures"])
    if kind in corrupt.ROW_LEVEL_KINDS:
        rejected = pd.read_csv(io.BytesIO(lake.read_bytes(f"{folder}/rejected_rows.csv")))
        assert len(rejected) > 0 and rejected["rejection_reasons"].str.len().min() > 0


def test_a_few_bad_rows_are_set_aside_and_the_rest_published(lake, settings):
    deliver(lake, "schedule", "duplicates", rows=3)
    original = len(feed_frame("schedule", DAY))

    result = ingest_feed(lake, "schedule", DS, settings)

    assert result.status == "passed_with_quarantined_rows", result.message
    assert (result.rows, result.quarantined_rows, result.rows_read) == (original, 3, original + 3)
    assert lake.partition(raw_key("schedule", DS)).rows == original
    assert lake.partition(raw_key("schedule", DS)).metadata["quarantined_rows"] == 3
    assert any("3 of 723 rows quarantined" in w for w in result.warnings)
    (folder, names), = attempts(lake, "schedule").items()
    assert {"source.csv", "validation.json", "rejected_rows.csv"} <= set(names)
    rejected = pd.read_csv(io.BytesIO(lake.read_bytes(f"{folder}/rejected_rows.csv")))
    assert rejected["source_line"].tolist() == [original + 2, original + 3, original + 4]
    assert set(rejected["rejection_reasons"]) == {
        "expect_compound_columns_to_be_unique(year, month, day, carrier, flight, origin)"
    }


def test_rejection_keeps_the_good_partition_and_a_fixed_redelivery_replaces_it(lake, settings):
    deliver(lake, "weather")
    assert ingest_feed(lake, "weather", DS, settings).status == "passed"
    before = lake.read_manifest(raw_key("weather", DS))

    deliver(lake, "weather", "bad_values")
    rejected = ingest_feed(lake, "weather", DS, settings)
    assert rejected.status == "rejected"
    assert lake.read_manifest(raw_key("weather", DS)) == before  # the earlier good data still serves
    assert len(lake.read_partition(raw_key("weather", DS))) == before["rows"]

    fixed = deliver(lake, "weather")
    result = ingest_feed(lake, "weather", DS, settings)
    assert result.status == "passed"
    after = lake.read_manifest(raw_key("weather", DS))
    assert after["write_id"] != before["write_id"]
    assert after["metadata"]["sha256"] == hashlib.sha256(fixed).hexdigest()
    assert len(attempts(lake, "weather")) == 1  # the rejected attempt stays on record


def test_outcomes_without_an_ingested_schedule_are_rejected(lake, settings):
    deliver(lake, "flights")

    result = ingest_feed(lake, "flights", DS, settings)

    assert result.status == "rejected"
    assert f"raw/schedule/date={DS}" in result.message
    assert not lake.partition_exists(raw_key("flights", DS))
    assert len(attempts(lake, "flights")) == 1


def test_missing_inputs_are_named(lake, settings):
    with pytest.raises(IngestInputError, match=f"landing/weather/{DS}.csv"):
        ingest_feed(lake, "weather", DS, settings)
    lake.write_bytes(landing_key("weather", DS), feed_frame("weather", DAY).to_csv(index=False).encode())
    with pytest.raises(IngestInputError, match="landing/reference/planes.csv"):
        ingest_feed(lake, "weather", DS, settings)


def test_cli_exit_codes_and_result_lines(lake, request, monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_ENV", "local")
    monkeypatch.setenv("LAKE_ROOT", lake.root)
    if lake.is_s3:
        monkeypatch.setenv("AWS_ENDPOINT_URL", request.getfixturevalue("s3_endpoint"))

    assert main(["--ds", DS]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert all(landing_key(feed, DS) in err for feed in ("schedule", "weather", "flights"))

    deliver(lake, "schedule")
    deliver(lake, "weather")
    assert main(["--ds", DS]) == EXIT_OK  # every feed that has landed; flights has not
    lines = parse_results(capsys.readouterr().out)
    assert [(r["feed"], r["status"]) for r in lines] == [("schedule", "passed"), ("weather", "passed")]
    assert set(lines[0]) >= {"feed", "ds", "status", "raw_uri", "quarantine_uri", "rows", "quarantined_rows",
                             "warnings", "failures"}
    assert lines[0]["raw_uri"] == lake.uri(raw_key("schedule", DS)) and lines[0]["quarantine_uri"] is None

    assert main(["--ds", DS, "--feed", "flights"]) == EXIT_USAGE
    assert landing_key("flights", DS) in capsys.readouterr().err

    deliver(lake, "flights", "non_utf8")
    assert main(["--ds", DS, "--feed", "flights"]) == EXIT_REJECTED
    captured = capsys.readouterr()
    (line,) = parse_results(captured.out)
    assert line["status"] == "rejected" and line["raw_uri"] is None and line["quarantine_uri"]
    assert line["failures"] and f"flights {DS} rejected: file_is_utf8: not UTF-8" in captured.err

    with pytest.raises(SystemExit) as exit_info:
        main(["--ds", "2013-02-30"])
    assert exit_info.value.code == EXIT_USAGE
