"""Validation of one landing feed file with Great Expectations 1.x (`validate_feed`, the entry point).

`validate_feed(feed, ds, data, references, settings, schedule=...)` takes the bytes of
`landing/{feed}/{ds}.csv`, the reference sets and, for the outcomes (`flights`) feed, the
schedule of the same flight date already ingested, and returns a `ValidationResult`:
the status, every failed check, the good rows ready for Parquet and the bad rows with
their reasons. It reads and writes no lake; `jobs.ingest` does that around it.

Checks run in two stages:
1. File checks that must pass before pandas can be trusted with the bytes: not empty,
   UTF-8 (the failure names the byte offset and line), not truncated (no final newline
   and a last line shorter than the header: "upload looks incomplete"), parseable CSV.
   The CSV is read with `keep_default_na=False, na_values=[""]`, so text such as
   "unknown" or "NA" stays text and only an empty field is null. Outcomes whose date has
   no ingested schedule (the caller passes `schedule=None`) are rejected here too, naming
   the missing partition `raw/schedule/date={ds}`: there is nothing to check them against.
2. The feed's GX suite, `config/expectations/{feed}.json` (a serialized ExpectationSuite).
   Each expectation's `meta.level` says what a failure means:
   - `file`: the delivery as a whole is wrong (columns, types, row count, tail numbers
     mostly in the planes table) and is rejected;
   - `row`: only the rows GX lists in `unexpected_index_list` are bad (nulls, ranges,
     reference codes, flight date, duplicate keys, disagreement with the schedule).
   Expectations with GX `severity: warning` never block; their failures become warnings.
   Values known only at run time are suite parameters (`{"$PARAMETER": ...}`): the flight
   date, the reference code sets, the row-count bounds and the tail-number match rate.
   The planes and airports sets are narrowed to the codes the file uses (same answer,
   seconds faster: GX re-serializes a value set many times per run).
   Weather rows are unique per (origin, time_hour): the local-hour key of jobs/feeds.py
   repeats at the November DST fall-back, so its uniqueness is a warning only.

Before GX runs, two helper columns are derived: `flight_date` (the string YYYY-MM-DD
built from year, month, day) and, for outcomes, `matches_schedule` (the flight key exists
in the ingested schedule and sched_dep_time, sched_arr_time, dest and distance agree).
A float column that the suite expects as whole numbers, and whose values are all whole,
is read as nullable Int64 first: a lossless parse step, so that one empty cell in an
integer column is a row-level null, not a file-level type error.

Status: `rejected` if any file-level check fails, any expectation raised instead of
answering (a range check on a text column), or distinct bad rows / rows exceeds
`ingest.max_bad_row_fraction`; else `passed_with_quarantined_rows` if some rows are bad
(duplicates keep their first occurrence as good); else `passed`.

Good rows come out with the raw zone's Parquet dtypes (`RAW_DTYPES`, see `contract`). Bad rows keep the values as read plus
`source_line` (the header is line 1) and `rejection_reasons` (every failed check, "; "-joined).

Data Docs: given `docs_dir`, GX builds its HTML site for this one validation there (the
caller uploads it; that works for an S3 lake too). The site's animated tutorial GIFs and
web fonts (3.9 of its 4.1 MB) are pruned; pages fall back to system fonts.

great_expectations is imported inside functions only (it takes seconds to import).

The modules: `contract` (statuses, dtypes), `results` (References, Failure,
ValidationResult), `suites` (the GX suites), `file_checks` (stage 1 and the derived
columns), `gx_checks` (stage 2), `messages` (what each failure says).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from jobs.feeds import COLUMNS, FLIGHT_KEY
from jobs.lake import raw_key
from jobs.validation.contract import (
    CSV_OPTIONS, DERIVED, FILE, FLIGHT_DATE, MATCHES_SCHEDULE, PASSED, QUARANTINED, RAW_COLUMNS, RAW_DTYPES, REJECTED,
    ROW, SCHEDULE_MATCH_COLUMNS, STATUSES, WARNING, to_raw_dtypes,
)
from jobs.validation.file_checks import flight_date_text, matches_schedule, read_csv, whole_numbers_as_int
from jobs.validation.gx_checks import interpret, run_gx, suite_parameters
from jobs.validation.results import Failure, References, ValidationResult
from jobs.validation.suites import SUITE_DIR, SuiteError, build_suite, import_gx, load_suite_config, suite_path

if TYPE_CHECKING:
    from jobs.settings import Settings

__all__ = [
    "CSV_OPTIONS", "DERIVED", "FILE", "FLIGHT_DATE", "MATCHES_SCHEDULE", "PASSED", "QUARANTINED", "RAW_COLUMNS",
    "RAW_DTYPES", "REJECTED", "ROW", "STATUSES", "SUITE_DIR", "WARNING", "Failure", "References", "SuiteError",
    "ValidationResult", "build_suite", "load_suite_config", "suite_path", "to_raw_dtypes", "validate_feed",
]

log = logging.getLogger("jobs.validation")


def bad_rows_frame(frame: pd.DataFrame, bad: dict[Any, list[str]], feed: str) -> pd.DataFrame:
    rows = sorted(bad)
    keep = [c for c in frame.columns if c not in DERIVED[feed]]
    out = frame.loc[rows, keep].copy()
    out.insert(0, "source_line", [int(i) + 2 for i in rows])
    out["rejection_reasons"] = ["; ".join(dict.fromkeys(bad[i])) for i in rows]
    return out.reset_index(drop=True)


def validate_feed(
    feed: str,
    ds: str,
    data: bytes,
    references: References,
    settings: "Settings",
    *,
    schedule: pd.DataFrame | None = None,
    docs_dir: Path | None = None,
) -> ValidationResult:
    """Validate the bytes of `landing/{feed}/{ds}.csv`.

    `schedule`: for the outcomes feed (`flights`), the raw schedule of `ds` as ingested,
    or None when it was not (the file is then rejected). Ignored for other feeds.
    `docs_dir`: an empty local directory for GX Data Docs, or None for none.
    """
    if feed not in COLUMNS:
        raise ValueError(f"unknown feed {feed!r} (known: {', '.join(COLUMNS)})")
    dt.date.fromisoformat(ds)
    import_gx()  # once per process, seconds: not part of this file's timing
    started = time.perf_counter()
    frame, failures = read_csv(data)
    if frame is None:
        result = ValidationResult(feed, ds, REJECTED, 0, failures=failures, elapsed_s=time.perf_counter() - started)
        log.info("%s %s: rejected before GX: %s", feed, ds, "; ".join(str(f) for f in failures))
        return result
    log.info("%s %s: read %d rows, %d columns", feed, ds, len(frame), len(frame.columns))

    if feed == "flights":
        lacking = [c for c in (*FLIGHT_KEY, *SCHEDULE_MATCH_COLUMNS) if schedule is not None and c not in schedule]
        if schedule is None or lacking:
            # Outcomes are only meaningful against their schedule: without it there is nothing to validate.
            detail = (
                f"no ingested schedule for {ds} (partition {raw_key('schedule', ds)} is missing); outcomes are "
                "checked against it, so ingest the schedule of that date first"
                if schedule is None else
                f"the ingested schedule {raw_key('schedule', ds)} lacks columns [{', '.join(lacking)}]; re-ingest it"
            )
            failure = Failure("schedule_ingested", FILE, detail,
                              "Outcomes must agree with the schedule published before the flight date.")
            log.info("%s %s: rejected before GX: %s", feed, ds, failure)
            return ValidationResult(feed, ds, REJECTED, len(frame), failures=[failure],
                                    elapsed_s=time.perf_counter() - started)

    frame = whole_numbers_as_int(frame, feed).reset_index(drop=True)
    frame[FLIGHT_DATE] = flight_date_text(frame)
    if feed == "flights":
        frame[MATCHES_SCHEDULE] = matches_schedule(frame, schedule)

    suite, gx_result, docs_index = run_gx(feed, ds, frame, suite_parameters(feed, ds, frame, references, settings),
                                           docs_dir)
    missing_columns = set(COLUMNS[feed]) - set(frame.columns)
    found = interpret(suite, gx_result, frame, missing_columns)
    failures.extend(found.failures)

    bad_fraction = len(found.bad) / len(frame) if len(frame) else 0.0
    limit = settings.ingest.max_bad_row_fraction
    if any(f.level != ROW for f in failures):
        status = REJECTED
    elif found.bad and bad_fraction > limit:
        status = REJECTED
        failures.insert(0, Failure(
            "max_bad_row_fraction", FILE,
            f"{len(found.bad)} of {len(frame)} rows ({bad_fraction:.1%}) fail row-level checks, above "
            f"ingest.max_bad_row_fraction {limit:.1%}",
        ))
    elif found.bad:
        status = QUARANTINED
    else:
        status = PASSED

    good = None
    if status != REJECTED:
        good = to_raw_dtypes(frame.drop(index=list(found.bad)), feed)
    result = ValidationResult(
        feed, ds, status, len(frame),
        failures=failures,
        warnings=found.warnings,
        good_rows=good,
        bad_rows=bad_rows_frame(frame, found.bad, feed) if found.bad else None,
        checks_run=found.checks,
        elapsed_s=time.perf_counter() - started,
        gx_result=gx_result.to_json_dict(),
        docs_index=docs_index,
    )
    log.info("%s %s: %d checks in %.2fs -> %s (%d bad rows)", feed, ds, found.checks, result.elapsed_s, status,
             len(found.bad))
    return result
