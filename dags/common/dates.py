"""Which flight dates a run covers: its partition key, else the trigger form's start/end."""
from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowFailException


def range_params(what: str) -> dict[str, Param]:
    """The trigger form's start/end of a manual run without a partition key."""
    return {
        "start": Param(None, type=["null", "string"], format="date", title="First flight date",
                       description=f"Manual runs without a partition key: first flight date to {what}."),
        "end": Param(None, type=["null", "string"], format="date", title="Last flight date",
                     description=f"Last flight date to {what} (default: start). The range runs in one Spark pass."),
    }


def resolve_dates(partition_key: str | None, params: dict[str, Any], first_date: dt.date,
                  last_date: dt.date) -> tuple[dt.date, int]:
    """(first flight date, days) of a run: its partition key, else the trigger form's start/end.

    A bad request fails the task at once (no retry) naming the problem.
    """
    def parse(value: str, what: str) -> dt.date:
        try:
            return dt.date.fromisoformat(str(value)[:10])
        except ValueError:
            raise AirflowFailException(f"{what} {value!r} is not a date (YYYY-MM-DD)") from None

    if partition_key:
        first = last = parse(partition_key, "partition key")
    elif params.get("start"):
        first = parse(params["start"], "start")
        last = parse(params.get("end") or params["start"], "end")
    else:
        raise AirflowFailException("no flight date: trigger with a partition key (a flight date) or with start/end")
    if last < first:
        raise AirflowFailException(f"end {last} is before start {first}")
    if first < first_date or last > last_date:
        raise AirflowFailException(f"{first}..{last} is outside the source's flight dates {first_date}..{last_date}")
    return first, (last - first).days + 1
