"""
### flights_batch_scoring

Score the flights of a date **D** before they fly, with the serving model
(`models:/flight_delay@champion`), in Spark (`python -m jobs.score`):
`mlflow.pyfunc.spark_udf` feeds the model D's raw feature rows (the model does its own
preprocessing). Written to `predictions/flight_delay/date={D}/` (flight key, `probability`,
`predicted_delayed` at `training.decision_threshold`, `model_version`, `model_run_id`,
`scored_at`), which emits the `predictions_flight_delay` Asset with partition key D.

**When it runs.** On data: one run per flight date, created by the scheduler when
`features_flights` has an event for that date (a `PartitionedAssetTimetable`), so a
rebuilt features partition is rescored too.

**A catch-up scores ahead** (`jobs.score --catch-up`): the scheduler's run of D also scores the
later dates whose features are there and that were never scored, in the same Spark pass, and
keeps D when the champion already scored its current features. In a backfill or a replay's
stretch the first run scores the ready days, and the runs of the later days skip in about a
second ("already come from version N"). A day already served is never rescored ahead; a
rebuilt features partition is rescored by its own run.

**Trigger by hand** to rescore, e.g. after promoting or rolling back a model: a partition key
(one flight date), or `start` and `end` (a range: one Spark pass). A rerun replaces the
partition. `ahead_of` X rescores the days scored ahead of monitoring's decision of X
(`jobs.score --ahead-of X`): `delay_model_training` triggers it after a promotion that
monitoring of X started, so that in a catch-up or a replay every day is scored by the champion
serving at its start (live there are none).

**Nothing to score** is a *skipped* task, not a failure, and its log says why: no champion
yet (the first training has not promoted one), or no features partition for D (named).
A range scores the dates that have features and names the others in the log. A champion
that cannot be loaded (deleted version, missing artifact) fails at once, naming the version:
roll back with `delay_model_rollback`.

The alias is resolved once per run: every date of a range is scored by the same version,
and each partition records which.
"""
from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Param, PartitionedAssetTimetable, task

from common.assets import features_asset, predictions_asset
from common.config import default_args, settings, start_date
from common.dates import range_params, resolve_dates
from common.notify import predictions_deadline
from common.steps import pipeline_step

DAG_ID = "flights_batch_scoring"
_data = settings().data


def predictions_asset_event(result: dict[str, Any]):
    """Asset event for a scored date: the partition, its rows and the model that scored it."""
    if result.get("status") != "written":
        return None
    extra = {key: result.get(key) for key in ("predictions_uri", "rows", "model_version", "model_run_id",
                                              "predicted_delayed_rate")}
    return predictions_asset(), result["ds"], extra


with DAG(
    dag_id=DAG_ID,
    description="Spark + mlflow.pyfunc.spark_udf: score a flight date's flights with flight_delay@champion.",
    doc_md=__doc__,
    schedule=PartitionedAssetTimetable(assets=features_asset()),
    start_date=start_date(),
    catchup=False,
    max_active_runs=settings().airflow.max_active_runs.get(DAG_ID, 1),
    default_args=default_args(),
    # D's predictions by notifications.predictions_deadline after the start of D, else a mail.
    deadline=predictions_deadline(),
    tags=["scoring", "spark", "mlflow", "lake"],
    params={**range_params("score"),
            "ahead_of": Param(None, type=["null", "string"], format="date", title="Rescore the days after",
                              description="Monitoring's day X whose training was promoted: the dates with features "
                                          "after X and after the last monitored day (start/end left out).")},
) as dag:

    @task
    def flight_dates(params: dict | None = None, partition_key: str | None = None, dag_run=None) -> list[str]:
        """The flight dates of this run, as CLI arguments (wiring only)."""
        if (params or {}).get("ahead_of") and not partition_key:
            return ["--ahead-of", str(params["ahead_of"])[:10]]
        first, days = resolve_dates(partition_key, params or {}, _data.first_flight_date, _data.last_flight_date)
        if partition_key and str(getattr(dag_run, "run_type", "manual")) != "manual":
            return ["--ds", first.isoformat(), "--catch-up"]  # the scheduler's run of a features event
        return ["--ds", first.isoformat(), "--days", str(days)]

    pipeline_step(
        "score",
        step="score",
        arguments=flight_dates(),
        outlets=[predictions_asset()],
        asset_events=predictions_asset_event,
        doc_md="`python -m jobs.score --ds D --days N`: champion resolved once; predictions partition per date.",
    )
