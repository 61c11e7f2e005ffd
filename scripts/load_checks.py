"""What `make load` checks and reports (scripts/load.py runs it): natural keys, duplicate and misplaced rows in
every partition the run wrote, the task summary, the verdict and the printed summary."""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jobs.feeds import FLIGHT_KEY, KEYS

WEATHER_KEY = KEYS["weather"]
# Zones whose partitions the run writes (quarantine holds rejected rows, duplicates included, on purpose).
CHECKED_ZONES = ("raw", "features", "predictions", "training")
FAILED_TASK_STATES = ("failed", "upstream_failed")


def key_columns(partition: str, columns: Sequence[str]) -> tuple[str, ...] | None:
    """The natural key of a partition's rows (raw weather: origin and UTC hour; else the flight key), or
    None when its columns lack it."""
    key = WEATHER_KEY if partition.startswith("raw/weather/") else FLIGHT_KEY
    return key if set(key) <= set(columns) else None


def partition_date(partition: str) -> dt.date | None:
    """The flight date of a `.../date=YYYY-MM-DD` partition (None for others, e.g. training sets)."""
    last = partition.rstrip("/").rsplit("/", 1)[-1]
    return dt.date.fromisoformat(last[5:]) if last.startswith("date=") else None


def check_rows(frame: Any, key: Sequence[str], day: dt.date | None, date_checked: bool = True) -> dict[str, int]:
    """Rows, rows whose key repeats an earlier row's, and rows of another date than the partition's."""
    duplicates = int(frame.duplicated(list(key)).sum())
    other_date = 0
    if day is not None and date_checked and len(frame):
        same = (frame["year"] == day.year) & (frame["month"] == day.month) & (frame["day"] == day.day)
        other_date = int((~same).sum())
    return {"rows": int(len(frame)), "duplicates": duplicates, "other_date": other_date}


def summarize_tasks(tasks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Task instances by state, task seconds by DAG and by DAG.task (a sensor's wait apart), the failed and
    the retried ones."""
    by_state: Counter[str] = Counter()
    by_dag: dict[str, float] = defaultdict(float)
    by_task: dict[str, float] = defaultdict(float)
    wait_s = 0.0
    failed, retried = [], []
    for task in tasks:
        state = task.get("state") or "none"
        by_state[state] += 1
        seconds = float(task.get("duration") or 0.0)
        name = f"{task['dag_id']}.{task['task_id']}"
        ref = {"dag_id": task["dag_id"], "run_id": task["dag_run_id"], "task_id": task["task_id"],
               "map_index": task.get("map_index", -1), "try_number": task.get("try_number") or 1, "state": state}
        if task["task_id"].rsplit(".", 1)[-1].startswith("wait_for"):
            wait_s += seconds  # mostly waiting (in the triggerer), not work
        else:
            by_dag[task["dag_id"]] += seconds
            by_task[name] += seconds
        if state in FAILED_TASK_STATES:
            failed.append(ref)
        if (task.get("try_number") or 1) > 1:
            retried.append(ref)
    return {"by_state": dict(sorted(by_state.items())), "total": sum(by_state.values()),
            "task_s_by_dag": {k: round(v, 1) for k, v in sorted(by_dag.items(), key=lambda kv: -kv[1])},
            "task_s_by_task": {k: round(v, 1) for k, v in sorted(by_task.items(), key=lambda kv: -kv[1])},
            "sensor_wait_s": round(wait_s, 1), "failed": failed, "retried": retried}


def missing_days(runs: Iterable[Mapping[str, Any]], dag_id: str, field: str, days: Iterable[str]) -> list[str]:
    """The days (ISO dates) no run of `dag_id` is for (`field`: logical_date or partition_key), in order."""
    have = {(run.get(field) or "")[:10] for run in runs if run["dag_id"] == dag_id}
    return [day for day in days if day not in have]


def verdict(report: Mapping[str, Any]) -> list[str]:
    """What makes the run fail: failed tasks, duplicate or misplaced rows, an unfinished phase."""
    problems = []
    failed = report["tasks"]["failed"]
    if failed:
        problems.append(f"{len(failed)} failed task instance(s)")
    lake = report["lake"]
    if lake["duplicates"]:
        problems.append(f"{lake['duplicates']} duplicate row(s) in {len(lake['partitions_with_duplicates'])} partition(s)")
    if lake["other_date"]:
        problems.append(f"{lake['other_date']} row(s) of another date than their partition's")
    if lake.get("row_count_mismatches"):
        problems.append(f"{len(lake['row_count_mismatches'])} partition(s) whose rows differ from their manifest")
    lost = report.get("lost_runs") or []
    if lost:
        problems.append(f"{len(lost)} run(s) the scheduler never created: "
                        + ", ".join(f"{r['dag_id']} {r['partition_key']}" for r in lost))
    if report.get("error"):
        problems.append(report["error"])
    return problems


def format_summary(report: Mapping[str, Any]) -> str:
    tasks, lake, memory, phases = report["tasks"], report["lake"], report["memory"], report["phases"]
    lines = [f"load: {report['window']['first']}..{report['window']['last']} ({report['window']['days']} days), "
             f"{report['config']['executor']} parallelism {report['config']['parallelism']}, metadata + MLflow on "
             f"PostgreSQL; wall {report['wall_s'] / 60:.1f} min",
             "  phases: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in phases.items()),
             f"  task instances: {tasks['total']} ({', '.join(f'{s} {n}' for s, n in tasks['by_state'].items())}); "
             f"failed {len(tasks['failed'])}, with more than one try {len(tasks['retried'])} (a retry, or a deferred "
             "sensor's resume: Airflow 3 counts it as a try)",
             "  task time by DAG (s): " + ", ".join(f"{k} {v:.0f}" for k, v in tasks["task_s_by_dag"].items())
             + f"; sensors waited {tasks['sensor_wait_s']:.0f}",
             "  slowest tasks (s, summed over runs): " + ", ".join(
                 f"{k} {v:.0f}" for k, v in list(tasks["task_s_by_task"].items())[:8]),
             f"  lake: {lake['partitions']} partitions, {lake['rows']:,} rows checked: duplicates {lake['duplicates']}, "
             f"rows of another date {lake['other_date']}"
             + (f", {len(lake['row_count_mismatches'])} manifest mismatches" if lake.get("row_count_mismatches") else "")
             + "; " + ", ".join(f"{k} {v}" for k, v in lake["partitions_by_dataset"].items()),
             f"  memory (RSS sum, stack + driver): peak {memory['rss_peak_gib']:.2f} GiB, mean "
             f"{memory['rss_mean_gib']:.2f} GiB over {memory['samples']} samples; PSS sum peak "
             f"{memory['pss_peak_gib']:.2f} GiB, mean {memory['pss_mean_gib']:.2f} GiB; PostgreSQL backends peak "
             f"{memory['postgres_rss_peak_gib']:.2f} GiB RSS; processes at most {memory['processes_peak']}"]
    for ref in tasks["failed"]:
        lines.append(f"  FAILED {ref['dag_id']} {ref['run_id']} {ref['task_id']} (try {ref['try_number']}):")
        lines.extend("    " + line for line in (ref.get("log_tail") or "(no log)").splitlines())
    for ref in tasks["retried"]:
        lines.append(f"  tries > 1: {ref['dag_id']} {ref['run_id']} {ref['task_id']} (try {ref['try_number']}, "
                     f"{ref['state']})")
    for lost in report.get("lost_runs") or []:
        lines.append(f"  LOST {lost['dag_id']} {lost['partition_key']}: {lost['why']}; triggered by hand as "
                     f"{lost['run_id']} after {lost['after_s']:.0f} s")
    for part in lake["partitions_with_duplicates"]:
        lines.append(f"  DUPLICATES {part['partition']}: {part['duplicates']} of {part['rows']} rows")
    problems = verdict(report)
    lines.append("  verdict: " + ("PASS (0 failed tasks, 0 duplicate rows)" if not problems else
                                  "FAIL: " + "; ".join(problems)))
    return "\n".join(lines)


def check_lake(lake_root: str) -> dict[str, Any]:
    """Every partition of CHECKED_ZONES: rows, duplicate keys, rows of another date, manifest row count."""
    from jobs.lake import MANIFEST, Lake

    lake = Lake(lake_root)
    total = {"partitions": 0, "rows": 0, "duplicates": 0, "other_date": 0, "partitions_with_duplicates": [],
             "row_count_mismatches": [], "without_key": [], "partitions_by_dataset": {}}
    by_dataset: Counter[str] = Counter()
    for zone in CHECKED_ZONES:
        for manifest_key in sorted(k for k in lake.list(f"{zone}/") if k.endswith(f"/{MANIFEST}")):
            partition = manifest_key[: -len(MANIFEST) - 1]
            manifest = lake.read_manifest(partition)
            key = key_columns(partition, manifest["columns"])
            dataset = "/".join(partition.split("/")[:2])
            by_dataset[dataset] += 1
            if key is None:
                total["without_key"].append(partition)
                continue
            frame = lake.read_table(partition, key)[0].to_pandas()
            found = check_rows(frame, key, partition_date(partition), date_checked=key == FLIGHT_KEY)
            total["partitions"] += 1
            for name in ("rows", "duplicates", "other_date"):
                total[name] += found[name]
            if found["duplicates"] or found["other_date"]:
                total["partitions_with_duplicates"].append({"partition": partition, **found})
            if found["rows"] != manifest["rows"]:
                total["row_count_mismatches"].append({"partition": partition, "rows": found["rows"],
                                                      "manifest_rows": manifest["rows"]})
    total["partitions_by_dataset"] = dict(sorted(by_dataset.items()))
    return total
