"""The triggerer side of the lake sensors: wait for an object or a committed partition, asynchronously.

`common.sensors.LakeObjectSensor` pokes once on a worker and, when the object is not there yet,
defers to `LakeObjectTrigger`, which the triggerer runs: one asyncio loop waits for every such
sensor, so a day of waiting (or a year's replay, where each run waits for its day's delivery)
holds no worker slot and starts no process per poke. The trigger lives in plugins/, which every
Airflow component has on its `sys.path`, and needs only the `jobs` package (the lake).

The event carries `{"status": "found" | "timeout", "key", "uri", "waited_s"}`; the sensor turns a
timeout into its own outcome (failed, or skipped with `soft_fail`).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

CLASSPATH = "lake_triggers.LakeObjectTrigger"


class LakeObjectTrigger(BaseTrigger):
    """Fires once `key` exists under `lake_root` (a committed partition with `partition=True`), or at `deadline`."""

    def __init__(self, *, lake_root: str, key: str, partition: bool = False, poke_interval: float = 5.0,
                 deadline: float | None = None, s3_endpoint_url: str | None = None) -> None:
        super().__init__()
        self.lake_root = lake_root
        self.key = key
        self.partition = partition
        self.poke_interval = poke_interval
        self.deadline = deadline  # epoch seconds
        self.s3_endpoint_url = s3_endpoint_url

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {"lake_root": self.lake_root, "key": self.key, "partition": self.partition,
                           "poke_interval": self.poke_interval, "deadline": self.deadline,
                           "s3_endpoint_url": self.s3_endpoint_url}

    def _found(self) -> bool:
        from jobs.lake import Lake

        lake = Lake(self.lake_root, self.s3_endpoint_url)
        return lake.partition_exists(self.key) if self.partition else lake.exists(self.key)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.monotonic()
        while True:
            # The lake's I/O is blocking (a file stat, an S3 HEAD): off the triggerer's event loop.
            found = await asyncio.to_thread(self._found)
            event = {"key": self.key, "uri": f"{self.lake_root.rstrip('/')}/{self.key}",
                     "waited_s": round(time.monotonic() - started, 1)}
            if found:
                yield TriggerEvent({"status": "found", **event})
                return
            if self.deadline is not None and time.time() >= self.deadline:
                yield TriggerEvent({"status": "timeout", **event})
                return
            await asyncio.sleep(self.poke_interval)
