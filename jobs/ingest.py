"""Ingestion: validate each landed feed file of a flight date, then publish it or quarantine it.

    python -m jobs.ingest --ds 2013-01-05                  # every feed of that date that has landed
    python -m jobs.ingest --ds 2013-01-05 --feed flights   # only the outcomes

For each feed, `landing/{feed}/{ds}.csv` is validated by `jobs.validation` against the
reference tables in `landing/reference/` (and, for the outcomes, the schedule of the
same date already in `raw/schedule/date={ds}`). Then:
- passed: the rows replace `raw/{feed}/date={ds}` (atomic; a rerun replaces it);
- passed_with_quarantined_rows: the good rows are published as above, the bad rows set
  aside in quarantine with their reasons, and a WARNING logged;
- rejected: nothing is published (a previous good partition stays); the delivered bytes
  and the validation result go to quarantine; exit code 3 with every failed check on stderr.
Quarantine keeps every attempt: `quarantine/{feed}/date={ds}/attempt={UTC time}-{sha8}/`
holding `source.csv` (the bytes validated), `validation.json` (status, every failure, GX's
result) and `rejected_rows.csv` (bad rows with `source_line` and `rejection_reasons`)
when rows were set aside. The landing file is never touched.
GX Data Docs and GX's raw result (`validation_result.json`) replace
`reports/validation/{feed}/date={ds}/` on each run that got as far as GX.

The step contract is jobs/results.py. Exit codes: 0 every feed passed (maybe with
quarantined rows), 2 usage or missing input (no landing file, a reference table missing),
3 some feed rejected (EXIT_REJECTED; the message naming every failed check goes to stderr
and, in a pod, to the termination log). stdout gets one result line per feed:
    STEP_RESULT {"feed": ..., "ds": ..., "status": ..., "raw_uri": ..., "quarantine_uri": ...,
                 "report_uri": ..., "rows": ..., "rows_read": ..., "quarantined_rows": ...,
                 "warnings": [...], "failures": [...]}
`rows` counts the rows published, `rows_read` the data rows in the file, `quarantined_rows`
the rows set aside (all of them when the file is rejected); `raw_uri`, `quarantine_uri` and
`report_uri` are null when nothing was written there.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.cli import step_parser
from jobs.feeds import FEEDS_ORDER, REFERENCE_TABLES
from jobs.lake import Lake, landing_key, quarantine_key, raw_key, reference_key, report_key
from jobs.results import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, emit_result, record_rejection

if TYPE_CHECKING:  # pandas and GX load lazily: the Airflow side imports this module's constants.
    from jobs.settings import Settings
    from jobs.validation import References, ValidationResult

log = logging.getLogger("jobs.ingest")

__all__ = ["EXIT_OK", "EXIT_REJECTED", "EXIT_USAGE", "IngestInputError", "IngestResult", "ingest_feed",
           "load_references", "main"]
REJECTED = "rejected"  # jobs.validation.REJECTED, without importing pandas here


class IngestInputError(RuntimeError):
    """An input the step needs is absent (landing file, reference table): exit code 2."""


@dataclass
class IngestResult:
    feed: str
    ds: str
    status: str
    raw_uri: str | None = None
    quarantine_uri: str | None = None
    report_uri: str | None = None
    rows: int = 0
    rows_read: int = 0
    quarantined_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def rejected(self) -> bool:
        return self.status == REJECTED

    def to_json(self) -> dict[str, Any]:
        """The STEP_RESULT payload: references and counts, never data."""
        payload = asdict(self)
        payload.pop("message")
        return payload


def _read_table(lake: Lake, table: str):
    import pandas as pd

    from jobs.validation import CSV_OPTIONS

    return pd.read_csv(io.BytesIO(lake.read_bytes(reference_key(table))), **CSV_OPTIONS)


def load_references(lake: Lake, settings: "Settings") -> "References":
    """The reference sets from `landing/reference/` and settings; names every missing table."""
    from jobs.validation import References

    missing = [reference_key(t) for t in REFERENCE_TABLES if not lake.exists(reference_key(t))]
    if missing:
        raise IngestInputError(
            f"reference table(s) missing: {', '.join(lake.uri(k) for k in missing)} (run jobs.publish first)"
        )
    tables = {t: _read_table(lake, t) for t in REFERENCE_TABLES}
    try:
        return References.from_tables(
            planes=tables["planes"], airports=tables["airports"], airlines=tables["airlines"],
            origins=settings.data.origins, extra_airports=settings.data.extra_airports,
        )
    except ValueError as exc:
        raise IngestInputError(str(exc)) from None


def _attempt_key(feed: str, ds: str, sha256: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{quarantine_key(feed, ds)}/attempt={stamp}-{sha256[:8]}"


def _quarantine(lake: Lake, key: str, data: bytes, result: "ValidationResult", record: dict[str, Any]) -> str:
    lake.write_bytes(f"{key}/source.csv", data)
    if result.bad_rows is not None:
        lake.write_bytes(f"{key}/rejected_rows.csv", result.bad_rows.to_csv(index=False).encode("utf-8"))
    # validation.json last: an attempt folder with it is complete.
    lake.write_json(f"{key}/validation.json", record)
    return lake.uri(key)


def _publish_report(lake: Lake, feed: str, ds: str, result: "ValidationResult", docs_dir: Path) -> str | None:
    if result.gx_result is None:  # rejected before GX could run: nothing to render
        return None
    (docs_dir / "validation_result.json").write_text(json.dumps(result.gx_result, indent=2, default=str) + "\n")
    prefix = report_key("validation", feed, f"date={ds}")
    count = lake.write_tree(prefix, docs_dir, replace=True)
    log.info("%s %s: Data Docs (%d files) at %s", feed, ds, count, lake.uri(f"{prefix}/index.html"))
    return lake.uri(f"{prefix}/index.html")


def ingest_feed(
    lake: Lake,
    feed: str,
    ds: str,
    settings: "Settings | None" = None,
    *,
    references: "References | None" = None,
) -> IngestResult:
    """Validate `landing/{feed}/{ds}.csv` and publish it to raw or set it aside in quarantine.

    Raises IngestInputError when the landing file or a reference table is missing.
    """
    from jobs.settings import get_settings
    from jobs.validation import QUARANTINED, validate_feed

    if feed not in FEEDS_ORDER:
        raise ValueError(f"unknown feed {feed!r} (known: {', '.join(FEEDS_ORDER)})")
    dt.date.fromisoformat(ds)
    settings = settings or get_settings()
    started = time.perf_counter()
    source = landing_key(feed, ds)
    if not lake.exists(source):
        raise IngestInputError(f"{feed} of {ds} has not landed: no {lake.uri(source)}")
    data = lake.read_bytes(source)
    sha256 = hashlib.sha256(data).hexdigest()
    log.info("%s %s: read %d bytes from %s (sha256 %s)", feed, ds, len(data), lake.uri(source), sha256[:12])
    references = references or load_references(lake, settings)

    schedule = None
    if feed == "flights":
        schedule_key = raw_key("schedule", ds)
        if lake.partition_exists(schedule_key):
            schedule = lake.read_partition(schedule_key)
            log.info("%s %s: checking against the schedule %s (%d rows)", feed, ds, lake.uri(schedule_key),
                     len(schedule))
        else:
            log.warning("%s %s: no ingested schedule at %s", feed, ds, lake.uri(schedule_key))

    with tempfile.TemporaryDirectory(prefix=f"gx-docs-{feed}-") as tmp:
        docs_dir = Path(tmp)
        result = validate_feed(feed, ds, data, references, settings, schedule=schedule, docs_dir=docs_dir)
        report_uri = _publish_report(lake, feed, ds, result, docs_dir)

    outcome = IngestResult(
        feed=feed, ds=ds, status=result.status, report_uri=report_uri,
        rows=result.rows, rows_read=result.rows_read,
        quarantined_rows=result.rows_read if result.status == REJECTED else result.quarantined_rows,
        warnings=list(result.warnings), failures=[str(f) for f in result.failures], message=result.message,
    )
    record = {
        **result.to_json(),
        "landing_key": source,
        "landing_uri": lake.uri(source),
        "sha256": sha256,
        "report_uri": report_uri,
        "validated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    if result.status in (REJECTED, QUARANTINED):
        outcome.quarantine_uri = _quarantine(lake, _attempt_key(feed, ds, sha256), data, result, record)
    if result.status == QUARANTINED:
        row_checks = ", ".join(f"{f.check} ({f.rows})" for f in result.failures if f.rows)
        outcome.warnings.append(
            f"{result.quarantined_rows} of {result.rows_read} rows quarantined at {outcome.quarantine_uri}: {row_checks}"
        )
    if result.status != REJECTED:
        metadata = {
            "landing_key": source,
            "landing_uri": lake.uri(source),
            "sha256": sha256,
            "status": result.status,
            "rows_read": result.rows_read,
            "rows": result.rows,
            "quarantined_rows": result.quarantined_rows,
            "quarantine_uri": outcome.quarantine_uri,
            "report_uri": report_uri,
            "warnings": list(outcome.warnings),
            "checks": result.checks_run,
            "validated_at": record["validated_at"],
        }
        partition = lake.write_partition(raw_key(feed, ds), result.good_rows, metadata=metadata)
        outcome.raw_uri = partition.uri

    elapsed = time.perf_counter() - started
    if result.status == REJECTED:
        log.error("%s (quarantined at %s; %.1fs)", result.message, outcome.quarantine_uri, elapsed)
    elif result.status == QUARANTINED:
        log.warning("%s (published %d rows to %s; %d rows set aside at %s; %.1fs)", result.message, outcome.rows,
                    outcome.raw_uri, result.quarantined_rows, outcome.quarantine_uri, elapsed)
    else:
        log.info("%s -> %s (%.1fs)", result.message, outcome.raw_uri, elapsed)
    for warning in result.warnings:
        log.warning("%s %s: %s", feed, ds, warning)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("jobs.ingest", __doc__.split("\n\n")[0], "--ds 2013-03-01", "--ds 2013-03-01 --feed weather")
    parser.add_argument("--ds", required=True, type=dt.date.fromisoformat, help="flight date, YYYY-MM-DD")
    parser.add_argument("--feed", choices=FEEDS_ORDER, action="append",
                        help="only this feed (repeatable; default: every feed of the date that has landed)")
    args = parser.parse_args(argv)  # exits 2 on bad usage
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from jobs.settings import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"jobs.ingest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    lake = Lake.from_settings(settings)
    ds = args.ds.isoformat()
    requested = [f for f in FEEDS_ORDER if f in (args.feed or FEEDS_ORDER)]
    landed = [f for f in requested if lake.exists(landing_key(f, ds))]
    absent = [lake.uri(landing_key(f, ds)) for f in requested if f not in landed]
    if args.feed and absent:
        print(f"jobs.ingest: not landed: {', '.join(absent)}", file=sys.stderr)
        return EXIT_USAGE
    if not landed:
        print(f"jobs.ingest: nothing to ingest for {ds}: none of {', '.join(absent)} has landed", file=sys.stderr)
        return EXIT_USAGE
    if absent:
        log.info("not landed yet, skipped: %s", ", ".join(absent))

    try:
        references = load_references(lake, settings)
        results = []
        for feed in landed:  # schedule before flights: outcomes are checked against it
            results.append(ingest_feed(lake, feed, ds, settings, references=references))
            emit_result(results[-1].to_json())
    except IngestInputError as exc:
        print(f"jobs.ingest: {exc}", file=sys.stderr)
        return EXIT_USAGE

    rejected = [r for r in results if r.rejected]
    for result in rejected:
        print(result.message, file=sys.stderr)
    if rejected:
        record_rejection("\n".join(r.message for r in rejected))
        return EXIT_REJECTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
