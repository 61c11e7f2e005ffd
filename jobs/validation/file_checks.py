"""Stage 1, before GX: the file's bytes (empty, UTF-8, complete, CSV), lossless integer parsing, the derived columns.

The CSV is read with `keep_default_na=False, na_values=[""]`, so text such as "unknown" or
"NA" stays text and only an empty field is null.
"""
from __future__ import annotations

import csv
import io

import pandas as pd

from jobs.feeds import FLIGHT_KEY
from jobs.validation.contract import CSV_OPTIONS, FILE, RAW_DTYPES, SCHEDULE_MATCH_COLUMNS
from jobs.validation.results import Failure


def read_csv(data: bytes) -> tuple[pd.DataFrame | None, list[Failure]]:
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


def whole_numbers_as_int(frame: pd.DataFrame, feed: str) -> pd.DataFrame:
    """Integer columns that pandas read as float (because of empty cells) become Int64, losslessly."""
    out = frame.copy()
    for column, dtype in RAW_DTYPES[feed].items():
        if dtype not in ("int64", "Int64") or column not in out or out[column].dtype.kind != "f":
            continue
        values = out[column].dropna()
        if (values == values.round()).all():
            out[column] = out[column].astype("Int64")
    return out


# Derived columns ---------------------------------------------------------------
def flight_date_text(frame: pd.DataFrame) -> pd.Series:
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


def matches_schedule(frame: pd.DataFrame, schedule: pd.DataFrame) -> pd.Series:
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
