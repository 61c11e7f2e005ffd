"""Validation of one landing feed file with Great Expectations 1.x.

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

Good rows come out with Parquet-ready dtypes (`RAW_DTYPES`): whole numbers as int64, or
nullable Int64 where a value may be empty (dep_time and arr_time of cancelled flights);
measurements (delays, air time, weather) as float64; codes as pandas strings;
`time_hour` as a UTC timestamp; `flight_date` kept as a real date column (Spark reads it
as DateType); `matches_schedule` dropped. Bad rows keep the values as read plus
`source_line` (the header is line 1) and `rejection_reasons` (every failed check, "; "-joined).

Data Docs: given `docs_dir`, GX builds its HTML site for this one validation there (the
caller uploads it; that works for an S3 lake too). The site's animated tutorial GIFs and
web fonts (3.9 of its 4.1 MB) are pruned; pages fall back to system fonts.

great_expectations is imported inside functions only (it takes seconds to import).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd

from jobs.feeds import COLUMNS, FLIGHT_KEY
from jobs.lake import raw_key
from jobs.settings import CONFIG_DIR

if TYPE_CHECKING:
    from jobs.settings import Settings

log = logging.getLogger("jobs.validation")

SUITE_DIR = CONFIG_DIR / "expectations"

PASSED = "passed"
QUARANTINED = "passed_with_quarantined_rows"
REJECTED = "rejected"
STATUSES = (PASSED, QUARANTINED, REJECTED)

FILE, ROW, WARNING = "file", "row", "warning"

CSV_OPTIONS = {"keep_default_na": False, "na_values": [""], "low_memory": False}
FLIGHT_DATE = "flight_date"
MATCHES_SCHEDULE = "matches_schedule"
# What an outcome must share with its scheduled flight.
SCHEDULE_MATCH_COLUMNS = ("sched_dep_time", "sched_arr_time", "dest", "distance")
DERIVED = {"schedule": (FLIGHT_DATE,), "weather": (FLIGHT_DATE,), "flights": (FLIGHT_DATE, MATCHES_SCHEDULE)}

_SCHEDULE_DTYPES = {
    "year": "int64", "month": "int64", "day": "int64", "sched_dep_time": "int64", "sched_arr_time": "int64",
    "carrier": "string", "flight": "int64", "tailnum": "string", "origin": "string", "dest": "string",
    "distance": "int64", "hour": "int64", "minute": "int64", "time_hour": "timestamp",
}
RAW_DTYPES: dict[str, dict[str, str]] = {
    "schedule": _SCHEDULE_DTYPES,
    "flights": {
        **_SCHEDULE_DTYPES,
        "dep_time": "Int64", "arr_time": "Int64",
        "dep_delay": "float64", "arr_delay": "float64", "air_time": "float64",
    },
    "weather": {
        "origin": "string", "year": "int64", "month": "int64", "day": "int64", "hour": "int64",
        **{c: "float64" for c in ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust",
                                  "precip", "pressure", "visib")},
        "time_hour": "timestamp",
    },
}
# Columns of the raw partition, in order: the feed's columns, then the flight date.
RAW_COLUMNS = {feed: (*COLUMNS[feed], FLIGHT_DATE) for feed in COLUMNS}

# Data Docs assets not worth copying into the lake for every file (tutorial GIFs, web fonts).
_DOCS_PRUNE = ("static/fonts", "static/images/*.gif")

# How a failure message names each run-time set (the resolved value sets are long).
_SET_NAMES = {
    "carriers": "airlines.csv",
    "airports": "airports.csv + data.extra_airports",
    "origins": "data.origins",
    "tailnums": "planes.csv",
}


class SuiteError(RuntimeError):
    """An expectation suite file is missing or not loadable by GX."""


@dataclass(frozen=True)
class References:
    """The code sets rows are checked against (from the reference tables and settings)."""

    carriers: tuple[str, ...]
    airports: tuple[str, ...]
    origins: tuple[str, ...]
    tailnums: tuple[str, ...]

    @classmethod
    def from_tables(
        cls,
        *,
        planes: pd.DataFrame,
        airports: pd.DataFrame,
        airlines: pd.DataFrame,
        origins: Iterable[str],
        extra_airports: Iterable[str] = (),
    ) -> "References":
        def codes(frame: pd.DataFrame, column: str, table: str) -> tuple[str, ...]:
            if column not in frame.columns:
                raise ValueError(f"reference table {table} has no column {column!r} (columns: {list(frame.columns)})")
            return tuple(sorted({str(v) for v in frame[column].dropna()}))

        return cls(
            carriers=codes(airlines, "carrier", "airlines"),
            airports=tuple(sorted(set(codes(airports, "faa", "airports")) | set(extra_airports))),
            origins=tuple(sorted(origins)),
            tailnums=codes(planes, "tailnum", "planes"),
        )


@dataclass(frozen=True)
class Failure:
    """One failed check. `level`: file (the whole delivery) or row; `rows`: bad rows it flagged."""

    check: str
    level: str
    detail: str
    reason: str = ""
    rows: int = 0

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "detail": self.detail, "reason": self.reason,
                "rows": self.rows}


@dataclass
class ValidationResult:
    feed: str
    ds: str
    status: str
    rows_read: int
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    good_rows: pd.DataFrame | None = None
    bad_rows: pd.DataFrame | None = None
    checks_run: int = 0
    elapsed_s: float = 0.0
    gx_result: dict[str, Any] | None = None
    docs_index: Path | None = None

    @property
    def rows(self) -> int:
        """Rows that passed (0 when the file is rejected)."""
        return 0 if self.status == REJECTED or self.good_rows is None else len(self.good_rows)

    @property
    def quarantined_rows(self) -> int:
        return 0 if self.bad_rows is None else len(self.bad_rows)

    @property
    def message(self) -> str:
        head = f"{self.feed} {self.ds}"
        if self.status == REJECTED:
            return f"{head} rejected: " + "; ".join(str(f) for f in self.failures)
        if self.status == QUARANTINED:
            return (
                f"{head} passed with {self.quarantined_rows} of {self.rows_read} rows quarantined: "
                + "; ".join(str(f) for f in self.failures)
            )
        text = f"{head} passed: {self.rows_read} rows, {self.checks_run} checks"
        return text + (f" ({len(self.warnings)} warning(s))" if self.warnings else "")

    def to_json(self) -> dict[str, Any]:
        """Everything but the frames, JSON-ready (GX's own result included)."""
        return {
            "feed": self.feed,
            "ds": self.ds,
            "status": self.status,
            "message": self.message,
            "rows_read": self.rows_read,
            "rows": self.rows,
            "quarantined_rows": self.quarantined_rows,
            "checks_run": self.checks_run,
            "elapsed_s": round(self.elapsed_s, 3),
            "failures": [f.to_json() for f in self.failures],
            "warnings": list(self.warnings),
            "gx_result": self.gx_result,
        }


# Suites ----------------------------------------------------------------------
def suite_path(feed: str) -> Path:
    return SUITE_DIR / f"{feed}.json"


@lru_cache(maxsize=None)
def _suite_text(feed: str) -> str:
    path = suite_path(feed)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise SuiteError(f"no expectation suite for feed {feed!r}: {path} does not exist") from None


def load_suite_config(feed: str) -> dict[str, Any]:
    """The suite of `feed` as stored (a fresh copy: callers may change it)."""
    try:
        config = json.loads(_suite_text(feed))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{suite_path(feed)}: not valid JSON: {exc}") from None
    for number, expectation in enumerate(config.get("expectations", [])):
        level = expectation.get("meta", {}).get("level")
        if level not in (FILE, ROW):
            raise SuiteError(
                f"{suite_path(feed)}: expectation #{number} ({expectation.get('type')}) has meta.level "
                f"{level!r}, expected 'file' or 'row'"
            )
    return config


def build_suite(feed: str):
    """The feed's suite as a GX ExpectationSuite."""
    from great_expectations.core.expectation_suite import ExpectationSuite

    config = load_suite_config(feed)
    suite = ExpectationSuite(**config)
    # GX logs and drops an expectation it cannot load; a silently missing check is worse than a crash.
    if len(suite.expectations) != len(config["expectations"]):
        loaded = {type(e).__name__ for e in suite.expectations}
        raise SuiteError(
            f"{suite_path(feed)}: GX could not load {len(config['expectations']) - len(suite.expectations)} "
            f"expectation(s) (loaded types: {sorted(loaded)}); see the GX log above"
        )
    return suite


@lru_cache(maxsize=1)
def _import_gx():
    started = time.perf_counter()
    # GX logs its own start-up at INFO; our log says what matters.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    log.info("imported great_expectations %s in %.1fs", gx.__version__, time.perf_counter() - started)
    return gx


# Stage 1: the bytes ----------------------------------------------------------
def _read_csv(data: bytes) -> tuple[pd.DataFrame | None, list[Failure]]:
    if not data:
        return None, [Failure("file_not_empty", FILE, "the file is empty (0 bytes): nothing was delivered")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, [Failure(
            "file_is_utf8", FILE,
            f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}) cannot be decoded; "
            "upstream must export UTF-8",
        )]
    if not text.endswith(("\n", "\r")) and "\n" in text:
        header, last = text.split("\n", 1)[0], text.rsplit("\n", 1)[1]
        header_fields = len(next(csv.reader([header]), []))
        last_fields = len(next(csv.reader([last]), []))
        if last_fields < header_fields:
            last_line = text.count("\n") + 1
            return None, [Failure(
                "file_is_complete", FILE,
                f"upload looks incomplete: the last line (line {last_line}) has {last_fields} of "
                f"{header_fields} fields and the file does not end with a newline",
            )]
    try:
        frame = pd.read_csv(io.StringIO(text), **CSV_OPTIONS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return None, [Failure("file_parses_as_csv", FILE, f"not a readable CSV: {detail}")]
    return frame, []


def _whole_numbers_as_int(frame: pd.DataFrame, feed: str) -> pd.DataFrame:
    """Integer columns that pandas read as float (because of empty cells) become Int64, losslessly."""
    out = frame.copy()
    for column, dtype in RAW_DTYPES[feed].items():
        if dtype not in ("int64", "Int64") or column not in out or out[column].dtype.kind != "f":
            continue
        values = out[column].dropna()
        if (values == values.round()).all():
            out[column] = out[column].astype("Int64")
    return out


# Stage 2: derived columns ----------------------------------------------------
def _flight_date(frame: pd.DataFrame) -> pd.Series:
    """YYYY-MM-DD from year, month, day as text (no calendar parsing: 2013-02-30 must stay visible)."""
    if not {"year", "month", "day"} <= set(frame.columns):
        return pd.Series(None, index=frame.index, dtype=object)
    parts = []
    for column, width in (("year", 4), ("month", 2), ("day", 2)):
        number = pd.to_numeric(frame[column], errors="coerce")
        number = number.where(number == number.round())
        parts.append(number.astype("Int64").astype("string").str.zfill(width))
    text = parts[0] + "-" + parts[1] + "-" + parts[2]
    return text.astype(object).where(text.notna(), None)


def _matches_schedule(frame: pd.DataFrame, schedule: pd.DataFrame) -> pd.Series:
    """True where the outcome's flight is in the schedule with the same times, dest and distance.

    None (not checked) where the outcomes lack a column to decide it (the column check rejects them).
    """
    needed = [*FLIGHT_KEY, *SCHEDULE_MATCH_COLUMNS]
    if not set(needed) <= set(frame.columns):
        return pd.Series(None, index=frame.index, dtype=object)
    # Compare as text: the two sides come from CSV and Parquet, with different dtypes.
    left = frame[needed].astype("string").reset_index(names="_row")
    right = schedule[needed].astype("string").drop_duplicates(list(FLIGHT_KEY))
    merged = left.merge(right, on=list(FLIGHT_KEY), how="left", suffixes=("", "_scheduled"), indicator=True)
    match = merged["_merge"] == "both"
    for column in SCHEDULE_MATCH_COLUMNS:
        match &= (merged[column] == merged[f"{column}_scheduled"]).fillna(False).astype(bool)
    return pd.Series(match.to_numpy(dtype=bool), index=merged["_row"].to_numpy()).reindex(frame.index).astype(object)


# Stage 2: GX -----------------------------------------------------------------
def _present(codes: tuple[str, ...], frame: pd.DataFrame, column: str) -> list[str]:
    """The reference codes that occur in `column`: the same membership answer as the whole table.

    GX re-serializes an expectation's value set many times per run; the planes and airports
    tables would make each validation seconds slower, the codes a file uses keep it fast.
    """
    if column not in frame:
        return list(codes)
    return sorted(set(codes) & {str(v) for v in frame[column].dropna().unique()})


def _parameters(feed: str, ds: str, frame: pd.DataFrame, references: References,
                settings: "Settings") -> dict[str, Any]:
    low, high = settings.ingest.row_count_bounds[feed]
    return {
        "flight_dates": [ds],
        "min_rows": low,
        "max_rows": high,
        "carriers": list(references.carriers),
        "airports": _present(references.airports, frame, "dest"),
        "origins": list(references.origins),
        "tailnums": _present(references.tailnums, frame, "tailnum"),
        "min_tailnum_reference_match": settings.ingest.min_tailnum_reference_match,
    }


def _run_gx(feed: str, ds: str, frame: pd.DataFrame, parameters: dict[str, Any], docs_dir: Path | None):
    """Validate `frame` with the feed's suite in a fresh ephemeral GX context; maybe build Data Docs."""
    gx = _import_gx()
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {}
    if docs_dir is not None:
        sites["lake"] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    ))
    batch = (
        context.data_sources.add_pandas("landing")
        .add_dataframe_asset(feed)
        .add_batch_definition_whole_dataframe(f"{feed}.csv")
    )
    suite = context.suites.add(build_suite(feed))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{feed} {ds}", data=batch, suite=suite)
    )
    run_id = RunIdentifier(run_name=ds, run_time=dt.datetime.now(dt.timezone.utc))
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        result_format={"result_format": "COMPLETE"},
        run_id=run_id,
    )
    if docs_dir is not None:
        # The context is fresh, so its site holds exactly this suite and this validation.
        context.build_data_docs(site_names=["lake"])
        for pattern in _DOCS_PRUNE:
            for path in docs_dir.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    return suite, result, (docs_dir / "index.html" if docs_dir is not None else None)


def _exception_message(info: Any) -> str | None:
    """GX reports a raised expectation flat or keyed by metric; None if nothing raised."""
    if not info:
        return None
    candidates = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for candidate in candidates:
        if candidate.get("raised_exception"):
            message = str(candidate.get("exception_message") or "exception").strip()
            return message.splitlines()[-1] if message else "exception"
    return None


def _label(type_: str, kwargs: dict[str, Any]) -> str:
    if kwargs.get("column"):
        return f"{type_}({kwargs['column']})"
    if kwargs.get("column_list"):
        return f"{type_}({', '.join(kwargs['column_list'])})"
    return type_


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _examples(result: dict[str, Any], limit: int = 3, indices: list[Any] | None = None) -> str:
    values: list[str] = []
    for value in result.get("partial_unexpected_list") or []:
        text = repr(value) if isinstance(value, str) else (
            "(" + ", ".join(str(v) for v in value.values()) + ")" if isinstance(value, dict) else _number(value)
        )
        if text not in values:
            values.append(text)
        if len(values) == limit:
            break
    if indices is None:
        indices = list(result.get("unexpected_index_list") or [])
    lines = [str(i + 2) for i in indices[:limit] if isinstance(i, int)]
    more = "..." if len(indices) > limit else ""
    parts = []
    if values:
        parts.append("e.g. " + ", ".join(values))
    if lines:
        parts.append(f"line{'s' if len(lines) > 1 else ''} {', '.join(lines)}{more}")
    return f" ({'; '.join(parts)})" if parts else ""


def _value_set_name(original: dict[str, Any], resolved: list[Any]) -> str:
    value_set = original.get("value_set")
    if isinstance(value_set, dict) and value_set.get("$PARAMETER") in _SET_NAMES:
        return _SET_NAMES[value_set["$PARAMETER"]]
    shown = ", ".join(str(v) for v in resolved[:5])
    return f"[{shown}{', ...' if len(resolved) > 5 else ''}]"


def _non_numbers(column: pd.Series) -> str:
    """For a numeric column read as text: which values are not numbers, and where."""
    text = column.dropna()
    bad = text[pd.to_numeric(text, errors="coerce").isna()]
    if bad.empty:
        return ""
    shown = ", ".join(repr(str(v)) for v in bad.unique()[:3])
    return f"read as text: {len(bad)} of {len(column)} values are not numbers ({shown}; first on line {bad.index[0] + 2})"


def _describe(type_: str, kwargs: dict[str, Any], original: dict[str, Any], result: dict[str, Any],
              frame: pd.DataFrame, indices: list[Any]) -> str:
    count, total = result.get("unexpected_count"), result.get("element_count", len(frame))
    if type_ == "expect_table_columns_to_match_set":
        observed = set(result.get("observed_value") or [])
        expected = set(kwargs.get("column_set") or [])
        missing = [c for c in kwargs.get("column_set") or [] if c not in observed]
        unknown = [c for c in frame.columns if c in observed - expected]
        parts = []
        if missing:
            parts.append(f"missing [{', '.join(missing)}]")
        if unknown:
            parts.append(f"unknown [{', '.join(unknown)}]")
        return ", ".join(parts) or f"columns {sorted(observed)}"
    if type_ == "expect_table_row_count_to_be_between":
        return (f"{result.get('observed_value')} rows, expected {_number(kwargs.get('min_value'))} to "
                f"{_number(kwargs.get('max_value'))}")
    if type_ == "expect_column_values_to_be_in_type_list":
        column = kwargs.get("column")
        expected = "/".join(kwargs.get("type_list") or [])
        if "observed_value" in result:
            return f"column is {result['observed_value']}, expected {expected}"
        if column in frame and "str" not in (kwargs.get("type_list") or []):
            hint = _non_numbers(frame[column])
            if hint:
                return f"{hint}; expected {expected}"
        return f"{count} of {total} values are not {expected}{_examples(result)}"
    if type_ == "expect_column_values_to_not_be_null":
        return f"{count} of {total} rows empty{_examples(result)}"
    if type_ == "expect_column_values_to_be_between":
        return (f"{count} of {total} rows outside [{_number(kwargs.get('min_value'))}, "
                f"{_number(kwargs.get('max_value'))}]{_examples(result)}")
    if type_ == "expect_column_values_to_be_in_set":
        if kwargs.get("column") == MATCHES_SCHEDULE:
            return (f"{count} of {total} rows disagree with the ingested schedule (flight absent, or "
                    f"{'/'.join(SCHEDULE_MATCH_COLUMNS)} differ){_examples({**result, 'partial_unexpected_list': []})}")
        where = _value_set_name(original, list(kwargs.get("value_set") or []))
        mostly = kwargs.get("mostly")
        if isinstance(mostly, (int, float)) and mostly < 1:
            matched = 100.0 - float(result.get("unexpected_percent_nonmissing") or 0.0)
            return (f"only {matched:.1f}% of non-empty values are in {where}, expected at least "
                    f"{mostly * 100:.0f}%{_examples(result)}")
        return f"{count} of {total} rows not in {where}{_examples(result)}"
    if type_ == "expect_column_values_to_match_regex":
        return f"{count} of {total} rows do not match {kwargs.get('regex')}{_examples(result)}"
    if type_ == "expect_compound_columns_to_be_unique":
        keys = [dict(frame.loc[i, list(kwargs["column_list"])]) for i in indices[:3] if i in frame.index]
        return (f"{len(indices)} row(s) repeat the key of an earlier row"
                f"{_examples({'partial_unexpected_list': keys}, indices=indices)}")
    if count is not None:
        return f"{count} of {total} rows fail{_examples(result)}"
    return f"failed (observed {result.get('observed_value')!r})"


@dataclass
class _Interpretation:
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bad: dict[Any, list[str]] = field(default_factory=dict)  # row index -> failed check labels
    checks: int = 0


def _interpret(suite, gx_result, frame: pd.DataFrame, missing_columns: set[str]) -> _Interpretation:
    originals = {e.id: e.configuration.kwargs for e in suite.expectations}
    out = _Interpretation()
    # GX returns results in its own order; report them in the suite's order.
    order = {e.id: n for n, e in enumerate(suite.expectations)}
    results = sorted(gx_result.results, key=lambda r: order.get(r.expectation_config.id, len(order)))
    for item in results:
        config = item.expectation_config
        type_, kwargs, meta = config.type, dict(config.kwargs), dict(config.meta or {})
        level, reason = meta.get("level", FILE), meta.get("reason", "")
        label = _label(type_, kwargs)
        severity = str(getattr(config.severity, "value", config.severity) or "critical")
        out.checks += 1
        error = _exception_message(item.exception_info)
        if error is not None:
            columns = [kwargs["column"]] if kwargs.get("column") else list(kwargs.get("column_list") or [])
            absent = [c for c in columns if c in missing_columns]
            if not absent:
                detail = f"could not run: {error}"
            else:
                detail = "column missing" if kwargs.get("column") else f"columns missing [{', '.join(absent)}]"
            if severity == WARNING:
                out.warnings.append(f"{label}: {detail}")
            else:
                out.failures.append(Failure(label, FILE, detail, reason))
            continue
        if item.success:
            continue
        result = item.result or {}
        indices = [i for i in result.get("unexpected_index_list") or []]
        if type_ == "expect_compound_columns_to_be_unique" and indices:
            # GX flags every copy of a repeated key; the first occurrence stays good.
            repeated = frame.duplicated(subset=list(kwargs["column_list"]), keep="first")
            indices = [i for i in indices if repeated.get(i, False)]
        detail = _describe(type_, kwargs, originals.get(config.id, {}), result, frame, indices)
        if severity == WARNING:
            out.warnings.append(f"{label}: {detail}")
        elif level == ROW and "unexpected_index_list" in result:
            out.failures.append(Failure(label, ROW, detail, reason, rows=len(indices)))
            for index in indices:
                out.bad.setdefault(index, []).append(label)
        else:
            out.failures.append(Failure(label, FILE, detail, reason))
    return out


# Output frames ---------------------------------------------------------------
def to_raw_dtypes(frame: pd.DataFrame, feed: str) -> pd.DataFrame:
    """Good rows with the dtypes of the raw zone (see the module docstring)."""
    out = pd.DataFrame(index=frame.index)
    for column in RAW_COLUMNS[feed]:
        if column == FLIGHT_DATE:
            out[column] = pd.to_datetime(frame[column], format="%Y-%m-%d").dt.date
            continue
        dtype = RAW_DTYPES[feed][column]
        if dtype == "timestamp":
            out[column] = pd.to_datetime(frame[column], utc=True, format="%Y-%m-%dT%H:%M:%SZ")
        elif dtype == "string":
            out[column] = frame[column].astype("string")
        else:
            out[column] = frame[column].astype(dtype)
    return out.reset_index(drop=True)


def _bad_rows_frame(frame: pd.DataFrame, bad: dict[Any, list[str]], feed: str) -> pd.DataFrame:
    rows = sorted(bad)
    keep = [c for c in frame.columns if c not in DERIVED[feed]]
    out = frame.loc[rows, keep].copy()
    out.insert(0, "source_line", [int(i) + 2 for i in rows])
    out["rejection_reasons"] = ["; ".join(dict.fromkeys(bad[i])) for i in rows]
    return out.reset_index(drop=True)


# Entry point -----------------------------------------------------------------
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
    _import_gx()  # once per process, seconds: not part of this file's timing
    started = time.perf_counter()
    frame, failures = _read_csv(data)
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

    frame = _whole_numbers_as_int(frame, feed).reset_index(drop=True)
    frame[FLIGHT_DATE] = _flight_date(frame)
    if feed == "flights":
        frame[MATCHES_SCHEDULE] = _matches_schedule(frame, schedule)

    suite, gx_result, docs_index = _run_gx(feed, ds, frame, _parameters(feed, ds, frame, references, settings),
                                           docs_dir)
    missing_columns = set(COLUMNS[feed]) - set(frame.columns)
    found = _interpret(suite, gx_result, frame, missing_columns)
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
        bad_rows=_bad_rows_frame(frame, found.bad, feed) if found.bad else None,
        checks_run=found.checks,
        elapsed_s=time.perf_counter() - started,
        gx_result=gx_result.to_json_dict(),
        docs_index=docs_index,
    )
    log.info("%s %s: %d checks in %.2fs -> %s (%d bad rows)", feed, ds, found.checks, result.elapsed_s, status,
             len(found.bad))
    return result
