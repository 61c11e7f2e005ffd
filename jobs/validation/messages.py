"""Failure messages a person can act on: each failed expectation said with counts, examples and line numbers."""
from __future__ import annotations

from typing import Any

import pandas as pd

from jobs.validation.contract import MATCHES_SCHEDULE, SCHEDULE_MATCH_COLUMNS

# How a failure message names each run-time set (the resolved value sets are long).
_SET_NAMES = {
    "carriers": "airlines.csv",
    "airports": "airports.csv + data.extra_airports",
    "origins": "data.origins",
    "tailnums": "planes.csv",
}



def exception_message(info: Any) -> str | None:
    """GX reports a raised expectation flat or keyed by metric; None if nothing raised."""
    if not info:
        return None
    candidates = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for candidate in candidates:
        if candidate.get("raised_exception"):
            message = str(candidate.get("exception_message") or "exception").strip()
            return message.splitlines()[-1] if message else "exception"
    return None


def check_label(type_: str, kwargs: dict[str, Any]) -> str:
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


def describe(type_: str, kwargs: dict[str, Any], original: dict[str, Any], result: dict[str, Any],
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
