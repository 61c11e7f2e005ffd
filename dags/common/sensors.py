"""Sensors on the lake: wait for an upstream delivery or a partition to exist.

Reschedule mode: between pokes the task gives its worker slot back, so a day
of waiting for a late feed costs nothing. The key is templated, so a DAG maps
its logical date onto the flight date it waits for.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException

from common.config import settings


class LakeObjectSensor(BaseSensorOperator):
    """Succeeds once `key` exists in the lake; skips when `flight_date` is outside the source.

    With `partition=True` it waits for a committed partition (its manifest) instead of an object.
    """

    template_fields: Sequence[str] = ("key", "flight_date")
    ui_color = "#fdf6e3"

    def __init__(self, *, key: str, flight_date: str, partition: bool = False, **kwargs: Any) -> None:
        config = settings().sensors
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", config.poke_interval_s)
        kwargs.setdefault("timeout", config.timeout_s)
        kwargs.setdefault("exponential_backoff", True)
        super().__init__(**kwargs)
        self.key = key
        self.flight_date = flight_date
        self.partition = partition

    def poke(self, context: Any) -> bool:
        from jobs.lake import Lake

        data = settings().data
        if not data.covers(dt.date.fromisoformat(self.flight_date)):
            raise AirflowSkipException(
                f"{self.flight_date} is outside the source's dates "
                f"({data.first_flight_date}..{data.last_flight_date}): nothing will land"
            )
        lake = Lake.from_settings()
        found = lake.partition_exists(self.key) if self.partition else lake.exists(self.key)
        self.log.info("%s %s", lake.uri(self.key), "found" if found else "not there yet")
        return found
