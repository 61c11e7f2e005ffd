"""A deadline reference for work keyed by flight date: the start (00:00 UTC) of the run's flight date.

Airflow's own `DAGRUN_LOGICAL_DATE` cannot date a `flights_batch_scoring` run: the scheduler
creates it from a features Asset event with a partition key and no logical date. This
reference reads the run's flight date (its partition date, else its partition key, else its
logical date), so `DeadlineAlert(reference=FlightDateStart(), interval=5 h)` means "by 05:00 of
the flight date". A run created `max_age_days` or more after its flight date began (a replay
or a backfill of history: late by construction) gets no deadline at all.

Registered below as a plugin: the scheduler finds the class by its path when it creates the
deadline of a run; DAG files import it from here (dags/common/notify.py).
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk.definitions.deadline import REFERENCE_TYPE_FIELD, BaseDeadlineReference

log = logging.getLogger(__name__)


def flight_date_start(partition_date: dt.datetime | None, partition_key: str | None,
                      logical_date: dt.datetime | None) -> dt.datetime | None:
    """00:00 UTC of the flight date a run works on; None when it has none."""
    if partition_date is not None:
        day = partition_date.astimezone(dt.timezone.utc).date() if partition_date.tzinfo else partition_date.date()
    elif partition_key:
        try:
            day = dt.date.fromisoformat(partition_key[:10])
        except ValueError:
            return None
    elif logical_date is not None:
        day = logical_date.astimezone(dt.timezone.utc).date() if logical_date.tzinfo else logical_date.date()
    else:
        return None
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class FlightDateStart(BaseDeadlineReference):
    """The start of the run's flight date; no deadline for a run created `max_age_days` after it."""

    max_age_days: int = 2
    required_kwargs: ClassVar[set[str]] = {"dag_id", "run_id"}

    def _evaluate_with(self, *, session: Any, dag_id: str, run_id: str, **kwargs: Any) -> dt.datetime | None:
        from sqlalchemy import select

        from airflow.models import DagRun

        row = session.execute(
            select(DagRun.partition_date, DagRun.partition_key, DagRun.logical_date)
            .where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        ).one_or_none()
        start = flight_date_start(*row) if row is not None else None
        if start is None:
            log.info("%s %s: no flight date, no deadline", dag_id, run_id)
            return None
        if dt.datetime.now(dt.timezone.utc) - start >= dt.timedelta(days=self.max_age_days):
            log.info("%s %s: flight date %s began %d+ days ago (replay or backfill): no deadline",
                     dag_id, run_id, start.date(), self.max_age_days)
            return None
        return start

    def serialize_reference(self) -> dict[str, Any]:
        return {REFERENCE_TYPE_FIELD: self.reference_name, "max_age_days": self.max_age_days}

    @classmethod
    def deserialize_reference(cls, reference_data: dict[str, Any]) -> FlightDateStart:
        return cls(max_age_days=int(reference_data.get("max_age_days", 2)))


class PipelineDeadlinesPlugin(AirflowPlugin):
    name = "pipeline_deadlines"
    deadline_references = [FlightDateStart]
