"""The triggerer side of the lake sensors: wait for an object or a committed partition, asynchronously.

`common.sensors.LakeObjectSensor` pokes once on a worker and, when the object is not there yet,
defers to `LakeObjectTrigger`, which the triggerer runs: one asyncio loop waits for every such
sensor, so a day of waiting (or a year's replay, where each run waits for its day's delivery)
holds no worker slot and starts no process per poke. The trigger lives in plugins/, which every
Airflow component has on its `sys.path`, and needs only the `jobs` package (the lake).

The event carries `{"status": "found" | "timeout", "key", "uri", "waited_s"}`; the sensor turns a
timeout into its own outcome (failed, or skipped with `soft_fail`).

With `end_from_trigger` (a sensor that starts in the triggerer: `LakeObjectSensor(start_from_trigger=True)`)
no worker is involved at all: the triggerer renders the key and flight date, and the trigger ends the
task itself: success when the object is there, skipped (soft fail) or failed at the deadline, skipped
at once for a flight date outside the source. Its log lines are the task's log.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

CLASSPATH = "lake_triggers.LakeObjectTrigger"


class LakeObjectTrigger(BaseTrigger):
    """Fires once `key` exists under `lake_root` (a committed partition with `partition=True`), or at the deadline:
    `timeout_s` after the trigger starts (what the sensors pass: a triggerer restart after the stack was down
    resumes the wait rather than timing out at once), or an absolute `deadline` (epoch seconds)."""

    def __init__(self, *, lake_root: str, key: str, partition: bool = False, poke_interval: float = 5.0,
                 deadline: float | None = None, s3_endpoint_url: str | None = None, timeout_s: float | None = None,
                 end_from_trigger: bool = False, soft_fail: bool = False, flight_date: str | None = None,
                 source_dates: tuple[str, str] | list[str] | None = None) -> None:
        super().__init__()
        self.lake_root = lake_root
        self.key = key
        self.partition = partition
        self.poke_interval = poke_interval
        self.deadline = deadline  # epoch seconds; else `timeout_s` from the trigger's start
        self.s3_endpoint_url = s3_endpoint_url
        self.timeout_s = timeout_s
        self.end_from_trigger = end_from_trigger
        self.soft_fail = soft_fail
        self.flight_date = flight_date
        self.source_dates = tuple(source_dates) if source_dates else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {"lake_root": self.lake_root, "key": self.key, "partition": self.partition,
                           "poke_interval": self.poke_interval, "deadline": self.deadline,
                           "s3_endpoint_url": self.s3_endpoint_url, "timeout_s": self.timeout_s,
                           "end_from_trigger": self.end_from_trigger, "soft_fail": self.soft_fail,
                           "flight_date": self.flight_date,
                           "source_dates": list(self.source_dates) if self.source_dates else None}

    def _outside_source(self) -> str | None:
        if not (self.flight_date and self.source_dates):
            return None
        first, last = self.source_dates
        if first <= str(self.flight_date)[:10] <= last:
            return None
        return f"{self.flight_date} is outside the source's dates ({first}..{last}): nothing will land"

    def _found(self) -> bool:
        from jobs.lake import Lake

        lake = Lake(self.lake_root, self.s3_endpoint_url)
        return lake.partition_exists(self.key) if self.partition else lake.exists(self.key)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.monotonic()
        deadline = self.deadline
        if deadline is None and self.timeout_s is not None:
            deadline = time.time() + float(self.timeout_s)
        if self.end_from_trigger and (outside := self._outside_source()):
            self.log.info("%s", outside)
            yield TaskSkippedEvent()
            return
        while True:
            # The lake's I/O is blocking (a file stat, an S3 HEAD): off the triggerer's event loop.
            found = await asyncio.to_thread(self._found)
            event = {"key": self.key, "uri": f"{self.lake_root.rstrip('/')}/{self.key}",
                     "waited_s": round(time.monotonic() - started, 1)}
            if found:
                yield self._end(event, "found") if self.end_from_trigger else TriggerEvent({"status": "found", **event})
                return
            if deadline is not None and time.time() >= deadline:
                yield self._end(event, "timeout") if self.end_from_trigger else TriggerEvent({"status": "timeout", **event})
                return
            await asyncio.sleep(self.poke_interval)

    def _end(self, event: dict[str, Any], status: str) -> TriggerEvent:
        """The task's own end, decided here (a sensor started from the triggerer has no worker to resume)."""
        if status == "found":
            self.log.info("%s found after %.1f s of waiting", event["uri"], event["waited_s"])
            return TaskSuccessEvent()
        self.log.warning("%s did not appear within %.0f s", event["uri"], event["waited_s"])
        return TaskSkippedEvent() if self.soft_fail else TaskFailedEvent()
