"""Sensors on the lake: wait for an upstream delivery or a partition to exist.

Deferrable: the sensor pokes once on the worker (a delivery that is already there costs no
more), then hands the wait to the triggerer (plugins/lake_triggers.py), so a day of waiting
for a late feed holds no worker slot and starts no process per poke; the task resumes on a
worker when the object appears, or fails (skips, with `soft_fail`) at its timeout. The key
is templated, so a DAG maps its logical date onto the flight date it waits for.

With `start_from_trigger=True` the sensor never takes a worker: the scheduler hands it straight
to the triggerer, which renders its key and flight date (Airflow 3.3) and ends the task itself
(found: success; at the timeout: skipped with `soft_fail`, else failed; a flight date outside
the source: skipped). A daily DAG with four sensors a day saves four worker processes a day (a
year's catch-up, 1,460). Its key must render from the run's own context (dates, partition key,
params), not from another task's XCom; a sensor with callbacks keeps the worker path, whose
callbacks run there. `airflow dags test` runs it the worker way.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException
from airflow.triggers.base import StartTriggerArgs

from common.config import settings

# lake_triggers.CLASSPATH, by name: parsing a DAG file does not import plugins/ (the triggerer does).
LAKE_TRIGGER = "lake_triggers.LakeObjectTrigger"


class LakeObjectSensor(BaseSensorOperator):
    """Succeeds once `key` exists in the lake; skips when `flight_date` is outside the source (of `feed`, if named).

    With `partition=True` it waits for a committed partition (its manifest) instead of an object.
    """

    template_fields: Sequence[str] = ("key", "flight_date")
    ui_color = "#fdf6e3"

    def __init__(self, *, key: str, flight_date: str, partition: bool = False, start_from_trigger: bool = False,
                 feed: str | None = None, **kwargs: Any) -> None:
        config = settings().sensors
        kwargs.setdefault("poke_interval", config.poke_interval_s)
        kwargs.setdefault("timeout", config.timeout_s)
        super().__init__(**kwargs)
        self.key = key
        self.flight_date = flight_date
        self.partition = partition
        self.feed = feed  # a feed whose source ends sooner (settings data.feed_last_dates) skips past its end
        self.start_from_trigger = start_from_trigger
        if start_from_trigger:
            # `key` and `flight_date` are rendered in the triggerer (both template fields, both trigger kwargs).
            self.start_trigger_args = StartTriggerArgs(trigger_cls=LAKE_TRIGGER, next_method="execute_complete",
                                                       next_kwargs=None, timeout=None,
                                                       trigger_kwargs=self._trigger_kwargs(ends_the_task=True))

    def _trigger_kwargs(self, ends_the_task: bool) -> dict[str, Any]:
        """LakeObjectTrigger's arguments. Its timeout counts from its start in the triggerer, not from a wall-clock
        deadline: a stack that was down (an interrupted replay, a maintenance window) resumes the wait instead of
        waking up past its deadline and skipping a day whose files were about to land."""
        current = settings()
        kwargs = {"lake_root": current.lake_root, "key": self.key, "partition": self.partition,
                  "poke_interval": float(self.poke_interval), "timeout_s": float(self.timeout),
                  "s3_endpoint_url": current.lake.s3_endpoint_url}
        if ends_the_task:
            data = current.data
            kwargs.update(end_from_trigger=True, soft_fail=bool(self.soft_fail), flight_date=self.flight_date,
                          source_dates=[data.first_flight_date.isoformat(), data.last_date(self.feed).isoformat()])
        return kwargs

    def execute(self, context: Any) -> None:
        """One poke here; if the object is not there yet, the triggerer waits for it."""
        if self.poke(context):
            return
        from lake_triggers import LakeObjectTrigger

        self.defer(trigger=LakeObjectTrigger(**self._trigger_kwargs(ends_the_task=False)), method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        event = event or {}
        if event.get("status") == "found":
            self.log.info("%s found after %.1f s of waiting", event.get("uri"), event.get("waited_s", 0.0))
            return
        message = f"{event.get('uri', self.key)} did not appear within {float(self.timeout):.0f} s"
        if self.soft_fail:
            raise AirflowSkipException(message)
        raise AirflowSensorTimeout(message)

    def poke(self, context: Any) -> bool:
        from jobs.lake import Lake

        data = settings().data
        if not data.covers(dt.date.fromisoformat(self.flight_date), self.feed):
            raise AirflowSkipException(
                f"{self.flight_date} is outside the source's {self.feed + ' ' if self.feed else ''}dates "
                f"({data.first_flight_date}..{data.last_date(self.feed)}): nothing will land"
            )
        lake = Lake.from_settings()
        found = lake.partition_exists(self.key) if self.partition else lake.exists(self.key)
        self.log.info("%s %s", lake.uri(self.key), "found" if found else "not there yet")
        return found


class DagRunFinishedSensor(BaseSensorOperator):
    """Succeeds once the run `run_id` of `external_dag_id` has finished, whichever way (success or failed).

    The wait is the triggerer's (the standard provider's DagStateTrigger): no worker slot, no
    process per poke. At `timeout` it fails, or skips with `soft_fail`.
    """

    template_fields: Sequence[str] = ("run_id",)
    ui_color = "#eee8d5"

    def __init__(self, *, external_dag_id: str, run_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", settings().sensors.poke_interval_s)
        super().__init__(**kwargs)
        self.external_dag_id = external_dag_id
        self.run_id = run_id

    def execute(self, context: Any) -> None:
        from airflow.providers.standard.triggers.external_task import DagStateTrigger

        self.defer(trigger=DagStateTrigger(dag_id=self.external_dag_id, states=["success", "failed"],
                                           run_ids=[self.run_id], poll_interval=float(self.poke_interval)),
                   method_name="execute_complete", timeout=dt.timedelta(seconds=float(self.timeout)))

    def execute_complete(self, context: Any, event: Any = None) -> None:
        states = event[1] if isinstance(event, (list, tuple)) and len(event) == 2 else {}
        self.log.info("%s run %s finished: %s", self.external_dag_id, self.run_id,
                      states.get(self.run_id, "?") if isinstance(states, dict) else "?")
