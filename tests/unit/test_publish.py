"""The replay publisher and its bad deliveries, against a real lake (local and S3)."""
from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys

import pandas as pd
import pytest

from jobs.upstream import corrupt as corruption
from jobs.feeds import COLUMNS, FEEDS_ORDER, FLIGHT_KEY, KEYS, REFERENCE_TABLES
from jobs.lake import Lake, landing_key, reference_key
from jobs.upstream.publish import feed_frame, main, publish, source_table
from jobs.settings import REPO_ROOT

JAN_1, JAN_2 = dt.date(2013, 1, 1), dt.date(2013, 1, 2)
OUTCOME_ONLY = ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time")
REFERENCE_KEYS = [reference_key(t) for t in REFERENCE_TABLES]


def landing_keys(*dates: dt.date, feeds=FEEDS_ORDER) -> list[str]:
    return [landing_key(feed, d.isoformat()) for d in dates for feed in feeds]


def read_csv(data: bytes, **kwargs) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), **kwargs)


def as_text(data: bytes) -> pd.DataFrame:
    """Cells exactly as written, so a comparison sees every changed character."""
    return read_csv(data, dtype=str, keep_default_na=False)


def source_rows(table: str, day: dt.date) -> pd.DataFrame:
    frame = source_table(table)
    return frame[(frame["year"] == day.year) & (frame["month"] == day.month) & (frame["day"] == day.day)]


def stamp(lake: Lake, key: str) -> tuple[bytes, int | None]:
    """Content and, on a local lake, modification time (ns) of an object."""
    mtime = None if lake.is_s3 else os.stat(lake.uri(key)).st_mtime_ns
    return lake.read_bytes(key), mtime


# Good deliveries -------------------------------------------------------------------

def test_publish_delivers_each_feed_and_the_reference_tables(lake):
    report = publish(lake, JAN_1, days=2)
    expected = REFERENCE_KEYS + landing_keys(JAN_1, JAN_2)
    assert report.written == expected
    assert report.skipped == [] and report.absent == []
    assert lake.list("landing") == sorted(expected)


def test_schedule_has_only_scheduled_columns_of_its_date(local_lake):
    publish(local_lake, JAN_1, days=2)
    for day in (JAN_1, JAN_2):
        schedule = read_csv(local_lake.read_bytes(landing_key("schedule", day.isoformat())))
        assert tuple(schedule.columns) == COLUMNS["schedule"]
        assert not set(OUTCOME_ONLY) & set(schedule.columns)  # nothing known only after the flight
        assert set(zip(schedule["year"], schedule["month"], schedule["day"])) == {(day.year, day.month, day.day)}
        assert len(schedule) == len(source_rows("flights", day))
        assert not schedule.duplicated(list(FLIGHT_KEY)).any()
    assert len(read_csv(local_lake.read_bytes(landing_key("schedule", "2013-01-01")))) == 842


def test_flights_are_the_full_outcomes_of_the_scheduled_flights(local_lake):
    publish(local_lake, JAN_1)
    flights = read_csv(local_lake.read_bytes(landing_key("flights", "2013-01-01")))
    schedule = read_csv(local_lake.read_bytes(landing_key("schedule", "2013-01-01")))
    assert tuple(flights.columns) == COLUMNS["flights"]
    assert set(OUTCOME_ONLY) <= set(flights.columns)
    assert (flights["day"] == 1).all() and (flights["month"] == 1).all()
    keys = list(FLIGHT_KEY)
    assert flights[keys].sort_values(keys).values.tolist() == schedule[keys].sort_values(keys).values.tolist()
    assert flights["arr_delay"].notna().sum() > 800  # real outcomes (a few cancelled flights have none)
    # The scheduled columns agree between the two feeds.
    shared = list(COLUMNS["schedule"])
    pd.testing.assert_frame_equal(flights[shared], schedule[shared])


def test_weather_holds_the_hourly_rows_of_its_date(local_lake):
    publish(local_lake, JAN_2)
    weather = read_csv(local_lake.read_bytes(landing_key("weather", "2013-01-02")))
    assert tuple(weather.columns) == COLUMNS["weather"]
    source = source_rows("weather", JAN_2)
    assert len(weather) == len(source) > 60
    assert set(zip(weather["year"], weather["month"], weather["day"])) == {(2013, 1, 2)}
    assert set(weather["origin"]) == {"EWR", "JFK", "LGA"}
    assert weather["hour"].between(0, 23).all()
    assert not weather.duplicated(list(KEYS["weather"])).any()


def test_landing_file_is_the_feed_frame_as_csv(local_lake):
    publish(local_lake, JAN_2, feeds=("schedule",))
    expected = feed_frame("schedule", JAN_2).to_csv(index=False).encode("utf-8")
    assert local_lake.read_bytes(landing_key("schedule", "2013-01-02")) == expected
    assert local_lake.list("landing/weather") == []  # only the feed asked for


def test_reference_tables_land_once_with_the_source_columns(local_lake):
    publish(local_lake, JAN_1)
    for table in REFERENCE_TABLES:
        landed = read_csv(local_lake.read_bytes(reference_key(table)))
        assert list(landed.columns) == list(source_table(table).columns)
        assert "_date" not in landed.columns
        assert len(landed) == len(source_table(table))
    before = {key: stamp(local_lake, key) for key in REFERENCE_KEYS}
    report = publish(local_lake, JAN_2)
    assert not set(REFERENCE_KEYS) & set(report.written)
    assert {key: stamp(local_lake, key) for key in REFERENCE_KEYS} == before


def test_second_publish_skips_and_keeps_delivered_files(lake):
    publish(lake, JAN_1, days=2)
    before = {key: stamp(lake, key) for key in lake.list("landing")}
    report = publish(lake, JAN_1, days=2)
    assert report.written == []
    assert report.skipped == landing_keys(JAN_1, JAN_2)
    assert {key: stamp(lake, key) for key in lake.list("landing")} == before


def test_redeliver_rewrites_delivered_files(lake):
    publish(lake, JAN_1)
    key = landing_key("flights", "2013-01-01")
    good = lake.read_bytes(key)
    lake.write_bytes(key, b"year,month\n2013,1\n")  # what a first, wrong delivery left
    assert publish(lake, JAN_1).skipped == landing_keys(JAN_1)
    assert lake.read_bytes(key) == b"year,month\n2013,1\n"
    report = publish(lake, JAN_1, redeliver=True)
    assert report.written == landing_keys(JAN_1)  # the landing files, not the reference tables again
    assert lake.read_bytes(key) == good


def test_day_missing_from_the_source_is_reported_absent_not_written_empty(lake):
    report = publish(lake, dt.date(2013, 12, 30), days=2)
    assert report.absent == [landing_key("weather", "2013-12-31")]
    assert not lake.exists(landing_key("weather", "2013-12-31"))
    assert lake.exists(landing_key("weather", "2013-12-30"))
    assert lake.exists(landing_key("schedule", "2013-12-31"))
    assert lake.exists(landing_key("flights", "2013-12-31"))
    # Neither a correction nor a bad delivery invents the missing file.
    report = publish(lake, dt.date(2013, 12, 31), feeds=("weather",), redeliver=True, corrupt_kind="empty_file")
    assert report.absent == [landing_key("weather", "2013-12-31")]
    assert not lake.exists(landing_key("weather", "2013-12-31"))


# Bad deliveries --------------------------------------------------------------------

ROWS = 3
TARGET = {"schedule": "distance", "flights": "distance", "weather": "temp"}


def changed(good: pd.DataFrame, bad: pd.DataFrame, column: str) -> pd.Series:
    """Which rows of `column` differ (frames of the same length, read as text)."""
    assert len(good) == len(bad)
    return good[column] != bad[column]


def unchanged_except(good: pd.DataFrame, bad: pd.DataFrame, *columns: str) -> None:
    others = [c for c in good.columns if c not in columns]
    pd.testing.assert_frame_equal(good[others], bad[others])


def check_missing_column(feed, good_bytes, data):
    good, bad = as_text(good_bytes), as_text(data)
    assert list(bad.columns) == [c for c in good.columns if c != TARGET[feed]]
    unchanged_except(good, bad.assign(**{TARGET[feed]: good[TARGET[feed]]}))


def check_extra_column(feed, good_bytes, data):
    good, bad = as_text(good_bytes), as_text(data)
    assert list(bad.columns) == [*good.columns, "gate_id"]
    assert (bad["gate_id"] == "B22").all()
    unchanged_except(good, bad.drop(columns="gate_id"))


def check_wrong_type(feed, good_bytes, data):
    good, bad = as_text(good_bytes), as_text(data)
    column = TARGET[feed]
    assert changed(good, bad, column).sum() == ROWS
    assert (bad.loc[changed(good, bad, column), column] == "unknown").all()
    unchanged_except(good, bad, column)
    assert read_csv(data)[column].dtype == object  # no longer numeric


def check_empty_file(feed, good_bytes, data):
    assert data == b""


def check_header_only(feed, good_bytes, data):
    assert data == good_bytes.split(b"\n", 1)[0] + b"\n"
    assert as_text(data).empty


def check_truncated(feed, good_bytes, data):
    assert not data.endswith(b"\n")
    good_lines, lines = good_bytes.rstrip(b"\n").split(b"\n"), data.split(b"\n")
    assert len(lines) == len(good_lines)
    assert lines[:-1] == good_lines[:-1]
    assert good_lines[-1].startswith(lines[-1])
    assert 0 < len(lines[-1]) < len(good_lines[-1])
    assert lines[-1].count(b",") < lines[0].count(b",")  # the last row is missing fields


def check_other_date(feed, good_bytes, data):
    good, bad = as_text(good_bytes), as_text(data)
    moved = changed(good, bad, "day")
    assert moved.sum() == ROWS
    assert set(bad.loc[moved, "day"]) == {"3"}  # 2013-01-02 rows now claim 2013-01-03
    unchanged_except(good, bad, "day")


def check_duplicates(feed, good_bytes, data):
    good, bad = as_text(good_bytes), as_text(data)
    assert len(bad) == len(good) + ROWS
    pd.testing.assert_frame_equal(bad.iloc[: len(good)], good)
    assert bad.duplicated(list(KEYS[feed])).sum() == ROWS
    assert bad.duplicated().sum() == ROWS  # whole-row copies


def check_bad_values(feed, good_bytes, data):
    good, bad = as_text(good_bytes), as_text(data)
    if feed == "weather":
        damaged = changed(good, bad, "wind_speed")
        assert set(bad.loc[damaged, "wind_speed"].astype(float)) == {9999.0}
        assert set(bad.loc[damaged, "humid"].astype(float)) == {-5.0}
        columns = ("wind_speed", "humid")
    else:
        damaged = changed(good, bad, "distance")
        assert (bad.loc[damaged, "distance"].astype(float) == -good.loc[damaged, "distance"].astype(float)).all()
        columns = ("distance", "arr_delay") if feed == "flights" else ("distance",)
        if feed == "flights":
            assert set(bad.loc[damaged, "arr_delay"].astype(float)) == {99999.0}
    assert damaged.sum() == ROWS
    unchanged_except(good, bad, *columns)


def check_unknown_code(feed, good_bytes, data):
    good, bad = as_text(good_bytes), as_text(data)
    damaged = changed(good, bad, "origin")
    assert damaged.sum() == ROWS
    assert set(bad.loc[damaged, "origin"]) == {"XXX"}
    columns = ("origin",) if feed == "weather" else ("origin", "carrier", "dest")
    if feed != "weather":
        assert set(bad.loc[damaged, "carrier"]) == {"ZZ"}
        assert set(bad.loc[damaged, "dest"]) == {"QQQ"}
    unchanged_except(good, bad, *columns)


def check_non_utf8(feed, good_bytes, data):
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    text, good_text = data.decode("latin-1"), good_bytes.decode("utf-8")
    assert len(text) == len(good_text)
    assert sum(a != b for a, b in zip(text, good_text)) == 1  # one character, one bad byte
    assert len(data) == len(good_bytes)


def check_schedule_mismatch(feed, good_bytes, data):
    good, bad = as_text(good_bytes), as_text(data)
    moved = changed(good, bad, "sched_dep_time")
    assert moved.sum() == ROWS
    before, after = good.loc[moved, "sched_dep_time"].astype(int), bad.loc[moved, "sched_dep_time"].astype(int)
    assert ((before + 7) % 2400 == after).all()
    unchanged_except(good, bad, "sched_dep_time")


CHECKS = {
    "missing_column": check_missing_column,
    "extra_column": check_extra_column,
    "wrong_type": check_wrong_type,
    "empty_file": check_empty_file,
    "header_only": check_header_only,
    "truncated": check_truncated,
    "other_date": check_other_date,
    "duplicates": check_duplicates,
    "bad_values": check_bad_values,
    "unknown_code": check_unknown_code,
    "non_utf8": check_non_utf8,
    "schedule_mismatch": check_schedule_mismatch,
}
CASES = [
    (kind, feed)
    for kind in corruption.KINDS
    for feed in FEEDS_ORDER
    if kind != "schedule_mismatch" or feed == "flights"
]


def test_every_corruption_kind_has_a_check():
    assert set(CHECKS) == set(corruption.KINDS)
    assert set(corruption.ROW_LEVEL_KINDS) <= set(corruption.KINDS)


@pytest.mark.parametrize("kind, feed", CASES, ids=[f"{k}-{f}" for k, f in CASES])
def test_corruption_kind_does_its_documented_damage(local_lake, kind, feed):
    publish(local_lake, JAN_2, feeds=(feed,))
    key = landing_key(feed, "2013-01-02")
    good_bytes = local_lake.read_bytes(key)
    report = publish(local_lake, JAN_2, feeds=(feed,), corrupt_kind=kind, corrupt_rows=ROWS)
    assert report.written == [key]  # a bad delivery replaces the good one, on purpose
    data = local_lake.read_bytes(key)
    assert data != good_bytes
    CHECKS[kind](feed, good_bytes, data)


@pytest.mark.parametrize("feed", ["schedule", "weather"])
def test_schedule_mismatch_refuses_other_feeds(feed):
    with pytest.raises(ValueError, match="flights"):
        corruption.corrupt(feed_frame(feed, JAN_2), feed, "schedule_mismatch", ROWS)


@pytest.mark.parametrize("kind", corruption.ROW_LEVEL_KINDS)
def test_row_level_kinds_damage_ten_percent_by_default(kind):
    frame = feed_frame("flights", JAN_2)
    expected = int(len(frame) * corruption.DEFAULT_ROW_FRACTION)
    damaged = corruption._pick(frame, None)
    assert len(damaged) == expected > ROWS
    assert damaged.is_unique
    data = corruption.corrupt(frame, "flights", kind)
    good = as_text(frame.to_csv(index=False).encode())
    bad = as_text(data)
    if kind == "duplicates":
        assert len(bad) == len(good) + expected
    else:
        assert len(bad) == len(good)
        differing = (good != bad).any(axis=1)
        assert differing.sum() == expected


def test_corruption_is_deterministic():
    frame = feed_frame("schedule", JAN_2)
    for kind in corruption.ROW_LEVEL_KINDS[:-1]:
        assert corruption.corrupt(frame, "schedule", kind, ROWS) == corruption.corrupt(frame, "schedule", kind, ROWS)


@pytest.mark.parametrize("rows", [0, -2])
def test_damaging_no_rows_is_rejected(rows):
    with pytest.raises(ValueError, match="at least 1"):
        corruption.corrupt(feed_frame("schedule", JAN_2), "schedule", "duplicates", rows)


def test_more_rows_than_the_file_damages_every_row():
    frame = feed_frame("weather", JAN_2)
    assert len(corruption._pick(frame, len(frame) + 50)) == len(frame)


def test_unknown_corruption_kind_is_rejected(local_lake):
    with pytest.raises(ValueError, match="unknown corruption kind 'gibberish'"):
        publish(local_lake, JAN_2, feeds=("schedule",), corrupt_kind="gibberish")
    assert not local_lake.exists(landing_key("schedule", "2013-01-02"))


# The CLI ---------------------------------------------------------------------------

def run_cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAKE_ROOT": str(tmp_path / "lake"), "PIPELINE_ENV": "local"}
    return subprocess.run(
        [sys.executable, "-m", "jobs.publish", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("args, shown", [
    (["--ds", "2012-12-31"], "2012-12-31..2012-12-31"),
    (["--ds", "2013-12-30", "--days", "3"], "2013-12-30..2014-01-01"),
])
def test_cli_rejects_dates_outside_the_source(tmp_path, args, shown):
    result = run_cli(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert f"flight dates {shown} fall outside the source (2013-01-01..2013-12-31)" in result.stderr
    assert not (tmp_path / "lake").exists()  # nothing delivered


def test_cli_publishes_into_lake_root(tmp_path):
    result = run_cli(tmp_path, "--ds", "2013-12-31")
    assert result.returncode == 0, result.stderr
    landing = tmp_path / "lake" / "landing"
    assert (landing / "schedule" / "2013-12-31.csv").is_file()
    assert (landing / "flights" / "2013-12-31.csv").is_file()
    assert not (landing / "weather" / "2013-12-31.csv").exists()
    assert sorted(p.name for p in (landing / "reference").iterdir()) == ["airlines.csv", "airports.csv", "planes.csv"]
    assert "1 absent from the source (landing/weather/2013-12-31.csv)" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--ds", "2013-01-02", "--days", "0"], "--days must be at least 1"),
    (["--ds", "2013-01-02", "--corrupt", "duplicates", "--corrupt-rows", "0"], "--corrupt-rows must be at least 1"),
    (["--ds", "2013-01-02", "--corrupt", "schedule_mismatch"], "applies to --feed flights only"),
    (["--ds", "2013-01-02", "--corrupt", "gibberish"], "invalid choice: 'gibberish'"),
    (["--ds", "2013-02-30"], "invalid fromisoformat value"),
    (["--as-of", "2013-03-05", "--feed", "schedule"], "--as-of delivers the day's feeds as they are"),
    (["--as-of", "2014-01-05"], "--as-of 2014-01-05: nothing of the source (2013-01-01..2013-12-31) is due then"),
    (["--as-of", "2013-03-05", "--ds", "2013-03-05"], "not allowed with argument"),
    ([], "one of the arguments --ds --as-of is required"),
])
def test_cli_rejects_bad_arguments_before_delivering(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()


def test_cli_corrupt_delivery(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    assert main(["--ds", "2013-01-02", "--feed", "flights", "--corrupt", "schedule_mismatch",
                 "--corrupt-rows", "2"]) == 0
    lake = Lake(str(tmp_path / "lake"))
    good = feed_frame("flights", JAN_2)
    bad = read_csv(lake.read_bytes(landing_key("flights", "2013-01-02")))
    assert (good["sched_dep_time"] != bad["sched_dep_time"]).sum() == 2
    assert lake.list("landing/schedule") == []


def test_as_of_delivers_what_upstream_has_sent_by_the_start_of_the_day(tmp_path, monkeypatch):
    """The replay clock's tick: the schedule and forecast of D, the outcomes of D-1; nothing else."""
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    lake = Lake(str(tmp_path / "lake"))
    assert main(["--as-of", "2013-03-05"]) == 0
    assert lake.list("landing/schedule") == ["landing/schedule/2013-03-05.csv"]
    assert lake.list("landing/weather") == ["landing/weather/2013-03-05.csv"]
    assert lake.list("landing/flights") == ["landing/flights/2013-03-04.csv"]
    assert read_csv(lake.read_bytes("landing/flights/2013-03-04.csv")).equals(
        read_csv(feed_frame("flights", dt.date(2013, 3, 4)).to_csv(index=False).encode()))
    # The first day of the source has no outcomes of the day before; the day after its end only outcomes.
    assert main(["--as-of", "2013-01-01"]) == 0 and lake.list("landing/flights") == ["landing/flights/2013-03-04.csv"]
    assert main(["--as-of", "2014-01-01"]) == 0
    assert "landing/flights/2013-12-31.csv" in lake.list("landing/flights")
    assert "landing/schedule/2014-01-01.csv" not in lake.list("landing/schedule")


def test_as_of_with_days_delivers_each_clock_day_of_the_stretch(tmp_path, monkeypatch):
    """A replay stretch: `--as-of E --days 3` is the three ticks E-2, E-1 and E at once, nothing of E+1."""
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    lake = Lake(str(tmp_path / "lake"))
    assert main(["--as-of", "2013-03-07", "--days", "3"]) == 0
    days = ["2013-03-05", "2013-03-06", "2013-03-07"]
    assert lake.list("landing/schedule") == [f"landing/schedule/{d}.csv" for d in days]
    assert lake.list("landing/weather") == [f"landing/weather/{d}.csv" for d in days]
    assert lake.list("landing/flights") == [f"landing/flights/{d}.csv" for d in ("2013-03-04", "2013-03-05", "2013-03-06")]
