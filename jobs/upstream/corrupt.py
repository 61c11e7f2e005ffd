"""Bad deliveries, made on purpose, for tests and demos.

Each kind turns a good feed file (a DataFrame) into the bytes an upstream system
might really send. Row-level kinds damage `rows` rows (default: 10% of the file,
enough to quarantine it whole; pass a small number to exercise row-level
quarantine, where good rows are published and bad rows set aside).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # DAG files import KINDS at parse time: no pandas at module level.
    import pandas as pd

DEFAULT_ROW_FRACTION = 0.10


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


def _pick(frame: pd.DataFrame, rows: int | None) -> pd.Index:
    if rows is not None and rows < 1:
        raise ValueError(f"rows to damage must be at least 1, got {rows}")
    count = rows if rows is not None else max(1, int(len(frame) * DEFAULT_ROW_FRACTION))
    count = min(count, len(frame))
    # Spread over the file, deterministically, so a rerun damages the same rows.
    step = max(1, len(frame) // max(count, 1))
    return frame.index[::step][:count]


def _numeric_target(feed: str) -> str:
    return "temp" if feed == "weather" else "distance"


def missing_column(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    return _csv(frame.drop(columns=[_numeric_target(feed)]))


def extra_column(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    out = frame.copy()
    out["gate_id"] = "B22"
    return _csv(out)


def wrong_type(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    out = frame.copy()
    column = _numeric_target(feed)
    out[column] = out[column].astype(object)
    out.loc[_pick(out, rows), column] = "unknown"
    return _csv(out)


def empty_file(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    return b""


def header_only(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    return _csv(frame.iloc[0:0])


def truncated(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    # An upload cut off mid-row: the last line stops halfway, with no newline.
    data = _csv(frame).rstrip(b"\n")
    last_line_start = data.rfind(b"\n") + 1
    return data[: last_line_start + (len(data) - last_line_start) // 2]


def other_date(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    out = frame.copy()
    picked = _pick(out, rows)
    out.loc[picked, "day"] = out.loc[picked, "day"].map(lambda d: d + 1 if d < 28 else d - 1)
    return _csv(out)


def duplicates(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    import pandas as pd

    return _csv(pd.concat([frame, frame.loc[_pick(frame, rows)]], ignore_index=True))


def bad_values(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    out = frame.copy()
    picked = _pick(out, rows)
    if feed == "weather":
        out.loc[picked, "wind_speed"] = 9999.0
        out.loc[picked, "humid"] = -5.0
    else:
        out.loc[picked, "distance"] = -out.loc[picked, "distance"]
        if feed == "flights":
            out.loc[picked, "arr_delay"] = 99999.0
    return _csv(out)


def unknown_code(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    out = frame.copy()
    picked = _pick(out, rows)
    out.loc[picked, "origin"] = "XXX"
    if feed != "weather":
        out.loc[picked, "carrier"] = "ZZ"
        out.loc[picked, "dest"] = "QQQ"
    return _csv(out)


def non_utf8(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    # A Latin-1 export: one byte that is not valid UTF-8.
    text = _csv(frame).decode("utf-8")
    column = "origin"
    first = str(frame[column].iloc[0])
    return text.replace(first, first[:-1] + "\u00c3", 1).encode("latin-1")


def schedule_mismatch(frame: pd.DataFrame, feed: str, rows: int | None) -> bytes:
    """Outcomes that do not match the schedule already ingested (changed dest, time)."""
    if feed != "flights":
        raise ValueError("schedule_mismatch applies to the flights (outcomes) feed only")
    out = frame.copy()
    picked = _pick(out, rows)
    out.loc[picked, "sched_dep_time"] = (out.loc[picked, "sched_dep_time"] + 7) % 2400
    return _csv(out)


KINDS: dict[str, Callable[[pd.DataFrame, str, int | None], bytes]] = {
    "missing_column": missing_column,
    "extra_column": extra_column,
    "wrong_type": wrong_type,
    "empty_file": empty_file,
    "header_only": header_only,
    "truncated": truncated,
    "other_date": other_date,
    "duplicates": duplicates,
    "bad_values": bad_values,
    "unknown_code": unknown_code,
    "non_utf8": non_utf8,
    "schedule_mismatch": schedule_mismatch,
}
ROW_LEVEL_KINDS = ("other_date", "duplicates", "bad_values", "unknown_code", "schedule_mismatch")


def corrupt(frame: pd.DataFrame, feed: str, kind: str, rows: int | None = None) -> bytes:
    try:
        make = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown corruption kind {kind!r} (known: {', '.join(KINDS)})") from None
    return make(frame, feed, rows)
