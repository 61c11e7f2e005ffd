"""
### flights_features

Point-in-time features for the flights of a date **D**, built with Spark
(`python -m jobs.features`): from D's schedule, D's weather (the forecast
stand-in) and the outcomes of the days before D only, never an outcome of D.
Written to `features/flights/date={D}/`, which emits the `features_flights`
Asset with partition key D (scoring runs on it).

**When it runs.** On data, not on a clock: one run per flight date, created by
the scheduler once both `raw_schedule` and `raw_weather` have an event for that
date (a `PartitionedAssetTimetable`; the run's partition key is the date). A `raw_weather`
event with `status: absent` (`flights_ingest`'s `weather.no_forecast`: no forecast landed) builds
the day without weather: `weather_available = false`, and the log and Asset event warn. The
run first waits (soft, reschedule mode) for the outcomes of D-1, which land in
the same `flights_ingest` run; if they never come, the features are built with
the history there is, and `history_days_available` says so.

**Trigger by hand** to rebuild, e.g. after a fix to the feature code:
* a partition key (one flight date), or
* `start` and `end` (a range: one Spark pass for all of it, the cheap way to
  backfill), and
* `force` to rebuild dates that have not changed.

**Skip what has not changed.** Each partition records the fingerprint of its
inputs (raw partitions read, planes table, feature schema, code version,
settings). A date whose inputs give the same fingerprint is reported
`unchanged` in the task log and not rewritten, and emits no Asset event; a
redelivered raw partition or new feature code changes it.

Local runs are clients of the stack's Spark Connect server (no JVM start per
run); production runs a SparkApplication through the Spark operator. Missing
schedule partition: the task fails naming it.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, Param, PartitionedAssetTimetable, task

from common.assets import features_asset, raw_asset
from common.config import default_args, settings, start_date
from common.dates import range_params, resolve_dates
from common.sensors import LakeObjectSensor
from common.steps import pipeline_step
from jobs.lake import raw_key

DAG_ID = "flights_features"
_data = settings().data


def features_asset_event(result: dict[str, Any]):
    """Asset event for a features result; an unchanged partition is not news."""
    if result.get("status") != "written":
        return None
    extra = {key: result.get(key) for key in ("features_uri", "rows", "fingerprint", "outcome_days_read")}
    extra["warnings"] = [f"missing input {key}" for key in result.get("missing_inputs") or ()
                         if key.startswith("raw/weather/")]
    return features_asset(), result["ds"], extra


with DAG(
    dag_id=DAG_ID,
    description="Spark: point-in-time features of a flight date from its schedule, forecast and earlier outcomes.",
    doc_md=__doc__,
    schedule=PartitionedAssetTimetable(assets=raw_asset("schedule") & raw_asset("weather")),
    start_date=start_date(),
    catchup=False,
    max_active_runs=settings().airflow.max_active_runs.get(DAG_ID, 1),
    default_args=default_args(),
    tags=["features", "spark", "lake"],
    params={
        **range_params("build"),
        "force": Param(False, type="boolean", title="Rebuild unchanged",
                       description="Rebuild dates whose inputs, code and settings have not changed."),
    },
) as dag:

    @task(multiple_outputs=True)
    def flight_dates(params: dict | None = None, partition_key: str | None = None) -> dict[str, Any]:
        """The flight dates of this run, as CLI arguments (wiring only)."""
        first, days = resolve_dates(partition_key, params or {}, _data.first_flight_date, _data.last_flight_date)
        arguments = ["--ds", first.isoformat(), "--days", str(days)] + (["--force"] if (params or {}).get("force") else [])
        return {"first": first.isoformat(), "day_before": (first - dt.timedelta(days=1)).isoformat(),
                "days": days, "arguments": arguments}

    dates = flight_dates()
    day_before = "{{ ti.xcom_pull(task_ids='flight_dates', key='day_before') }}"
    outcomes = LakeObjectSensor(
        task_id="wait_for_outcomes",
        key=raw_key("flights", day_before),
        flight_date=day_before,
        partition=True,
        soft_fail=True,
        doc_md="The outcomes of the day before (same ingest run); on timeout the features use the history there is.",
    )
    build = pipeline_step(
        "build_features",
        step="features",
        arguments=dates["arguments"],
        outlets=[features_asset()],
        asset_events=features_asset_event,
        trigger_rule="none_failed",
        doc_md="`python -m jobs.features --ds D --days N [--force]`; schema `config/features.yaml`.",
    )
    dates >> outcomes >> build
