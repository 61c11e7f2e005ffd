"""`make demo`: start the local stack and run the pipeline over January 2013 through Airflow.

1. start Airflow (api-server, scheduler, dag-processor, triggerer; SQLite) and MLflow,
   with the replay clock set to the demo window: `PIPELINE__AIRFLOW__END_DATE` bounds
   the DAGs' schedules, so catchup walks exactly the delivered days;
2. trigger `replay_publisher` to deliver January 2013 into landing (upstream plays its part);
3. unpause `flights_features`, then `flights_ingest`: the scheduler's catchup creates one
   ingest run per day, and each waits for its feeds, validates them with Great
   Expectations and publishes raw partitions or quarantines; each date whose schedule
   and forecast are published gets its own `flights_features` run (partitioned on the
   raw Assets), which builds its features with Spark as a client of the stack's Spark
   Connect server;
4. trigger `delay_model_training` on the window (holdout: its last labelled week): the
   candidate and its HGB baseline are tracked in MLflow, the gate compares them, and a
   candidate that passes becomes the `champion` of `flight_delay`. Until then each
   `flights_batch_scoring` run (one per features partition) is skipped: no champion yet;
5. trigger `flights_batch_scoring` for the whole window (a manual range run: one Spark
   pass with `spark_udf`), so every date has predictions stamped with the champion;
6. trigger `delay_model_monitoring` for the last `--monitor-days` dates, in order: Evidently
   drift reports, served performance of the days whose outcomes arrived, and the
   retraining decision with its reason (a triggered `delay_model_training` run shows up
   with the monitoring's reason);
7. print what succeeded, what the lake holds, and where to look, leaving the UIs up.

Rerunning is quick and safe: the stack is reused, delivered files are not rewritten,
and finished runs are kept. To replay further, `make demo DEMO_DAYS=59` (or
--days), which restarts the stack with the later end date.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import datetime as dt
import sys
import time
from collections import Counter
from typing import Any

from scripts.airflow_api import AirflowAPIError, AirflowClient
from scripts.stack import Stack, StackConfig, StackError

INGEST_DAG = "flights_ingest"
FEATURES_DAG = "flights_features"
TRAINING_DAG = "delay_model_training"
REPLAY_END_VAR = "PIPELINE__AIRFLOW__END_DATE"
PUBLISH_DAG = "replay_publisher"
SCORING_DAG = "flights_batch_scoring"
MONITORING_DAG = "delay_model_monitoring"


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def deliver(client: AirflowClient, first: dt.date, days: int) -> dict[str, Any]:
    client.unpause(PUBLISH_DAG)
    run = client.trigger(
        PUBLISH_DAG, conf={"start": first.isoformat(), "days": days}, logical_date=None,
        note="make demo: deliver the demo window into landing",
    ) if not _existing_success(client, PUBLISH_DAG, first, days) else None
    if run is None:
        _say(f"{PUBLISH_DAG}: already delivered {first} (+{days - 1} days)")
        return {"state": "success"}
    _say(f"{PUBLISH_DAG}: delivering {days} days from {first} ({run['dag_run_id']})")
    return client.wait_for_run(PUBLISH_DAG, run["dag_run_id"], timeout=900, echo=None)


def _existing_success(client: AirflowClient, dag_id: str, logical_date: dt.date, days: int) -> bool:
    """A successful delivery run from `logical_date` that covered at least `days` days."""
    for run in client.list_runs(dag_id, state="success", limit=100):
        conf = run.get("conf") or {}
        if conf.get("start") == logical_date.isoformat() and int(conf.get("days") or 0) >= days:
            return True
    return False


def replay_end(client: AirflowClient) -> str | None:
    """The end date the running scheduler uses for flights_ingest (the replay clock)."""
    end = client.request("GET", f"/api/v2/dags/{INGEST_DAG}/details").get("end_date")
    return end[:10] if end else None


def start_stack(first: dt.date, last: dt.date) -> Stack:
    config = StackConfig.local()
    config = dataclasses.replace(config, extra_env={**config.extra_env, REPLAY_END_VAR: last.isoformat()})
    stack = Stack(config)
    if not stack.start():  # already running: is its replay clock the one we want?
        client = stack.client()
        client.wait_for_dags([INGEST_DAG], timeout=300)
        if replay_end(client) != last.isoformat():
            _say(f"the running stack replays up to {replay_end(client)}; restarting it to end at {last}")
            stack.stop()
            stack.start()
    return stack


def ingest_runs(client: AirflowClient, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
    params = {
        "logical_date_gte": f"{first.isoformat()}T00:00:00Z",
        "logical_date_lte": f"{last.isoformat()}T00:00:00Z",
        "limit": 400,
        "order_by": "logical_date",
    }
    return client.request("GET", f"/api/v2/dags/{INGEST_DAG}/dagRuns", params=params)["dag_runs"]


def features_runs(client: AirflowClient, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
    """The asset-triggered runs of flights_features for the window's dates (one per partition key)."""
    runs = client.request("GET", f"/api/v2/dags/{FEATURES_DAG}/dagRuns", params={"limit": 400})["dag_runs"]
    window = {(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}
    return [run for run in runs if (run.get("partition_key") or "")[:10] in window]


def wait_for_runs(client: AirflowClient, dag_id: str, runs_of: Any, expected: int, timeout: float,
                  started: float) -> list[dict[str, Any]]:
    """Poll until `expected` runs (from `runs_of(client)`) have finished; say how far along they are."""
    last_line = ""
    while True:
        runs = runs_of(client)
        states = Counter(run["state"] for run in runs)
        finished = states["success"] + states["failed"]
        line = f"{dag_id}: {finished}/{expected} runs finished ({', '.join(f'{k} {v}' for k, v in sorted(states.items()))})"
        if line != last_line:
            _say(f"[{time.monotonic() - started:5.0f}s] {line}")
            last_line = line
        if len(runs) >= expected and finished == len(runs):
            return runs
        if time.monotonic() - started > timeout:
            raise AirflowAPIError(f"{dag_id} runs not finished after {timeout:.0f} s: {line}")
        time.sleep(10)


def train(client: AirflowClient, timeout: float) -> dict[str, Any]:
    """One training run over the demo window (defaults: last labelled week held out), waited for."""
    client.unpause(TRAINING_DAG)
    conf = {"reason": "make demo: first model of the demo window"}
    run = client.trigger(TRAINING_DAG, conf=conf, note="make demo: train on the demo window")
    _say(f"{TRAINING_DAG}: training ({run['dag_run_id']})")
    final = client.wait_for_run(TRAINING_DAG, run["dag_run_id"], timeout=timeout, echo=None)
    tasks = {t["task_id"]: t["state"] for t in client.task_instances(TRAINING_DAG, run["dag_run_id"])}
    evaluated = client.request(
        "GET", f"/api/v2/dags/{TRAINING_DAG}/dagRuns/{run['dag_run_id']}/taskInstances/evaluate_and_gate/xcomEntries/"
               "return_value")
    return {"state": final["state"], "tasks": tasks, "gate": (evaluated.get("value") or [{}])[0]}


def rescore(client: AirflowClient, first: dt.date, last: dt.date, timeout: float) -> dict[str, Any]:
    """One manual range run of the scoring DAG over the window, with the champion."""
    run = client.trigger(SCORING_DAG, conf={"start": first.isoformat(), "end": last.isoformat()},
                         note="make demo: score the window with the champion")
    _say(f"{SCORING_DAG}: scoring {first}..{last} with flight_delay@champion ({run['dag_run_id']})")
    return client.wait_for_run(SCORING_DAG, run["dag_run_id"], timeout=timeout, echo=None)


def monitor(client: AirflowClient, days: list[dt.date], timeout: float) -> list[dict[str, Any]]:
    """One monitoring run per date (in order: each decision reads the verdicts before it); their results."""
    client.unpause(MONITORING_DAG)
    runs = []
    for day in days:
        logical = dt.datetime.combine(day, dt.time(3), tzinfo=dt.timezone.utc)
        # A run of that day already there (an earlier demo, or the scheduler's own) runs again: the champion
        # and the predictions may have changed since (one run per logical date, so cleared, not re-triggered).
        existing = [r for r in client.list_runs(MONITORING_DAG, limit=400)
                    if (r.get("logical_date") or "").startswith(day.isoformat())]
        if existing and client.task_instances(MONITORING_DAG, existing[0]["dag_run_id"]):
            if existing[0]["state"] in ("success", "failed"):
                client.clear_run(MONITORING_DAG, existing[0]["dag_run_id"])
            runs.append(existing[0])
            continue
        if existing:  # a run without tasks (created while the day was outside the DAG's dates): replace it
            client.delete_run(MONITORING_DAG, existing[0]["dag_run_id"])
        runs.append(client.trigger(MONITORING_DAG, logical_date=logical,
                                   run_id=f"demo__{day.isoformat()}__{int(time.time())}",
                                   note="make demo: monitor the window"))
    _say(f"{MONITORING_DAG}: monitoring {days[0]}..{days[-1]} ({len(days)} runs, one at a time)")
    client.wait_for_runs([(MONITORING_DAG, r["dag_run_id"]) for r in runs], timeout=timeout, echo=None)
    return [{"run_id": run["dag_run_id"], **_monitor_result(client, run["dag_run_id"])} for run in runs]


def _monitor_result(client: AirflowClient, run_id: str) -> dict[str, Any]:
    """The monitor task's result of a run ({} when it has none: skipped, failed, not run)."""
    try:
        value = client.request("GET", f"/api/v2/dags/{MONITORING_DAG}/dagRuns/{run_id}/taskInstances/"
                                      "monitor/xcomEntries/return_value").get("value")
    except AirflowAPIError:
        return {}
    return (value or [{}])[0]


def monitoring_lines(results: list[dict[str, Any]], airflow_url: str) -> list[str]:
    lines = []
    for result in results:
        if not result.get("ds"):
            lines.append(f"  {result['run_id']}: no result (skipped or failed: see the monitor task's log)")
            continue
        auc = result.get("served_auc")
        lines.append(f"  {result['ds']}: drift share {result['drift_share']:.2f}"
                     f"{' (dataset drift)' if result['dataset_drift'] else ''}; served AUC "
                     f"{'pending' if auc is None else f'{auc:.3f}'}; {result['decision']}")
    if results and results[-1].get("report_key"):
        lines.append(f"  drift report: {airflow_url}/pipeline/{results[-1]['report_key']}")
    return lines


def registry_summary(tracking_uri: str, model: str) -> str:
    from mlflow import MlflowClient

    try:
        aliases = MlflowClient(tracking_uri=tracking_uri).get_registered_model(model).aliases
    except Exception as exc:  # noqa: BLE001 - a summary line, not a failure
        return f"  registry: {model} not readable ({type(exc).__name__})"
    return f"  registry: {model} " + ", ".join(f"{alias} -> v{version}" for alias, version in sorted(aliases.items()))


def lake_summary(lake_root: str, first: dt.date, last: dt.date) -> list[str]:
    from jobs.lake import Lake, raw_key

    lake = Lake(lake_root)
    lines = []
    for feed in ("schedule", "weather", "flights"):
        rows = partitions = quarantined_rows = 0
        day = first - dt.timedelta(days=1)
        while day <= last:
            key = raw_key(feed, day.isoformat())
            if lake.partition_exists(key):
                manifest = lake.read_manifest(key)
                partitions += 1
                rows += manifest["rows"]
                quarantined_rows += int(manifest["metadata"].get("quarantined_rows") or 0)
            day += dt.timedelta(days=1)
        quarantine = {k.split("/")[2] for k in lake.list(f"quarantine/{feed}")}
        lines.append(
            f"  raw/{feed:<9} {partitions:>3} partitions, {rows:>7,} rows"
            f"; quarantine: {len(quarantine)} date(s), {quarantined_rows} row(s) set aside from published days"
        )
    from jobs.features import features_key

    keys = [features_key((first + dt.timedelta(days=i)).isoformat()) for i in range((last - first).days + 1)]
    manifests = [lake.read_manifest(key) for key in keys if lake.partition_exists(key)]
    columns = len(manifests[0]["columns"]) if manifests else 0
    lines.append(f"  features/flights {len(manifests):>2} partitions, {sum(m['rows'] for m in manifests):>7,} rows, "
                 f"{columns} columns")
    from jobs.score import predictions_key

    keys = [predictions_key((first + dt.timedelta(days=i)).isoformat()) for i in range((last - first).days + 1)]
    manifests = [lake.read_manifest(key) for key in keys if lake.partition_exists(key)]
    versions = sorted({m["metadata"].get("model_version", "?") for m in manifests})
    lines.append(f"  predictions/flight_delay {len(manifests):>2} partitions, {sum(m['rows'] for m in manifests):>7,} "
                 f"rows, scored by version(s) {', '.join(versions) or '-'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1))
    parser.add_argument("--days", type=int, default=int(os.environ.get("DEMO_DAYS", 31)))
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--monitor-days", type=int, default=7,
                        help="monitor the last N dates of the window (default 7)")
    args = parser.parse_args(argv)
    first, last = args.start, args.start + dt.timedelta(days=args.days - 1)

    try:
        stack = start_stack(first, last)
    except StackError as exc:
        print(f"[demo] the stack did not start: {exc}", file=sys.stderr)
        return 1
    config = stack.config
    client = stack.client()
    client.wait_for_dags([INGEST_DAG, PUBLISH_DAG, FEATURES_DAG, TRAINING_DAG, SCORING_DAG, MONITORING_DAG],
                         timeout=300)

    started = time.monotonic()
    publish_run = deliver(client, first, args.days)
    if publish_run["state"] != "success":
        print(f"[demo] {PUBLISH_DAG} failed: see its log in the UI", file=sys.stderr)
        return 1
    client.unpause(SCORING_DAG)  # listening for the features Asset: skipped until a champion exists
    client.unpause(FEATURES_DAG)  # first: it must be listening when the raw Assets get their events
    client.unpause(INGEST_DAG)
    _say(f"{INGEST_DAG}: unpaused; the scheduler catches up from {first} to {last}, "
         f"and {FEATURES_DAG} runs for each date once its schedule and forecast are published")
    days = (last - first).days + 1
    runs = wait_for_runs(client, INGEST_DAG, lambda c: ingest_runs(c, first, last), days, args.timeout, started)
    feature_runs = wait_for_runs(client, FEATURES_DAG, lambda c: features_runs(c, first, last), days,
                                 args.timeout, started)
    training = train(client, args.timeout)
    scoring = rescore(client, first, last, args.timeout)
    monitor_days = [last - dt.timedelta(days=i) for i in range(min(args.monitor_days, days) - 1, -1, -1)]
    monitoring = monitor(client, monitor_days, args.timeout) if monitor_days else []
    retrainings = [r for r in client.list_runs(TRAINING_DAG, limit=100) if (r.get("conf") or {}).get("evidence")]
    elapsed = time.monotonic() - started

    states = Counter(run["state"] for run in runs)
    failed = [run["logical_date"][:10] for run in runs if run["state"] != "success"]
    failed_features = sorted(run["partition_key"][:10] for run in feature_runs if run["state"] != "success")
    user, password = stack.admin_credentials()
    print()
    print(f"Ran {first}..{last} through Airflow in {elapsed / 60:.1f} min. Ingestion: "
          f"{states['success']} run(s) succeeded, {len(failed)} failed{(': ' + ', '.join(failed)) if failed else ''}")
    print(f"Features: {len(feature_runs) - len(failed_features)} {FEATURES_DAG} run(s) succeeded, "
          f"{len(failed_features)} failed{(': ' + ', '.join(failed_features)) if failed_features else ''}")
    gate = training["gate"]
    verdict = ("passed: promoted to champion" if training["tasks"].get("promote") == "success"
               else "rejected: " + "; ".join(gate.get("reasons", [])[:2]) if gate else training["state"])
    print(f"Training: {TRAINING_DAG} {training['state']}; candidate v{gate.get('model_version', '?')} "
          f"ROC AUC {gate.get('roc_auc') or float('nan'):.3f} on the holdout; gate {verdict}")
    print(f"Scoring: {SCORING_DAG} {scoring['state']} for {first}..{last}")
    print(f"Monitoring ({MONITORING_DAG}):")
    print("\n".join(monitoring_lines(monitoring, config.airflow_url)))
    for run in retrainings:
        print(f"  retraining triggered: {TRAINING_DAG} {run['dag_run_id']} ({run['state']}): {run['conf']['reason']}")
    print("\n".join(lake_summary(config.lake_root, first, last)))
    print(registry_summary(config.mlflow_url, "flight_delay"))
    print()
    print(f"Airflow UI + REST API  {config.airflow_url}   login {user} / {password}")
    print(f"MLflow                 {config.mlflow_url}")
    print(f"Lake                   {config.lake_root}")
    print(f"Spark Connect          {config.spark_remote} (the Spark steps' sessions)")
    print(f"Validation reports     {config.airflow_url}/pipeline/reports/validation/ (Browse > Pipeline reports)")
    print(f"Drift reports          {config.airflow_url}/pipeline/reports/drift/  (MLflow experiment "
          f"flight_delay_monitoring: the daily trend)")
    if gate.get("model_version"):
        print(f"Model card             {config.airflow_url}/pipeline/reports/training/flight_delay/"
              f"version={gate['model_version']}/model_card.html")
    print()
    print("Try a bad delivery: trigger replay_publisher with")
    print(f'  {{"start": "{last}", "feeds": ["schedule"], "corrupt": "duplicates"}}')
    print(f"then clear flights_ingest > {last} > schedule.validate_and_publish: it fails red naming the")
    print("duplicated flights, quarantines the file and keeps the good raw partition. Trigger again with")
    print('"redeliver": true (and no corruption), clear the task: it publishes. `make stop` stops everything.')
    ok = not failed and not failed_features and training["state"] == "success" and scoring["state"] == "success"
    return 0 if ok and all(r.get("ds") for r in monitoring) else 1


if __name__ == "__main__":
    sys.exit(main())
