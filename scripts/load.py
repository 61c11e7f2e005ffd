"""`make load`: a 30-day catch-up on the production configuration, checked for failures and duplicates.

    python -m scripts.load [--start 2013-01-01] [--days 30] [--home .load]

Issue 17 item 6. The production shape on one host: Airflow's metadata and MLflow's backend store each
on a fresh PostgreSQL database (127.0.0.1:5432, user postgres; both dropped afterwards), LocalExecutor
with parallelism 4, the local stack's components (tests/integration/stack.py, the same code as `make
demo`: scheduler, dag-processor, triggerer, API server, MLflow server, Spark Connect, warm step runner),
an empty lake. Then, as the demo makes its first model, but for the whole window at once:
1. `replay_publisher` delivers every feed of the window's days; the scheduler's catch-up of
   `flights_ingest` (up to `airflow.max_active_runs.flights_ingest` runs at once) validates them,
   the asset-triggered `flights_features` runs build each day (and `flights_batch_scoring` runs are
   skipped: no champion yet);
2. `delay_model_training` (its defaults: the last labelled week held out) makes the first champion;
3. one `flights_batch_scoring` range run scores the window with it;
4. `delay_model_monitoring` is unpaused and its catch-up monitors every day, in order.
The DAGs' dates end with the window (`airflow.end_date`) and the lake sensors poll each second, as
in `make replay`; every other setting is the settings' own.

A features run the scheduler never creates (seen on PostgreSQL: the schedule and weather events of one
day, published by two tasks at the same moment, each opened its own `asset_partition_dag_run` row, so
neither row ever had both inputs) stalls the catch-up: after 3 quiet minutes the load triggers it by
hand with that partition key, as the timetable would have, and names it in the report (it fails the
verdict).

Then it checks and reports: task instances by state over every run (failed must be 0; each failed
one is listed with its log's tail; retried ones are listed too), rows in every lake partition the
run wrote whose key repeats (the flight key of jobs.feeds; weather's (origin, year, month, day,
hour)) or whose date is not the partition's (0 expected), the wall time by phase, task time by DAG
and task (durations from the REST API; sensors' waits apart), and memory: the RSS sum of the stack's
whole process tree (scripts.stack's membership rule) plus this driver, sampled every second (peak and
mean), the PSS sum every 15 s (RSS counts the pages a fork shares with its parent once per process),
and the PostgreSQL backends serving the run's two databases apart. A summary is printed and the
report written to `<home>/reports/`; the exit status is 1 when a task failed, a duplicate or a
misplaced row was found, a run was lost, or a phase did not finish.

`--days 3` tries it quickly: too few days for the first model (the settings' windows need
holdout + validation + 1 labelled days, and the window's last outcomes come the day after it), so
only delivery, ingestion and features run (scoring runs are skipped: no champion);
`--short-window` adds the small-window training settings of the tests (scripts.replay.SHORT_WINDOW_ENV:
a 3-day holdout, 2 validation days) and the demo's model family (HGB), so `--days 7 --short-window` tries every phase.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import signal
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scripts.airflow_api import AirflowAPIError, AirflowClient
from scripts.replay import (ALL_DAGS, FEATURES, INGEST, MONITORING, PUBLISH, SCORING, SHORT_WINDOW_ENV, TRAINING,
                            replay_env)
from scripts.demo import DEMO_ENV
from scripts.load_checks import check_lake, format_summary, missing_days, summarize_tasks, verdict
from scripts.stack import REPO_ROOT, StackError

LOAD_HOME = REPO_ROOT / ".load"
GIB = 1024 ** 3
RUN_DONE = ("success", "failed")


def _say(message: str) -> None:
    print(f"[load] {message}", flush=True)


# -- memory ----------------------------------------------------------------------------------------

class MemorySampler(threading.Thread):
    """Samples the RSS sum of `processes()` every `interval` s (PSS every `pss_every` samples), and of the
    PostgreSQL backends whose command line names one of `databases`."""

    def __init__(self, processes: Callable[[], list[Any]], databases: Sequence[str], interval: float = 1.0,
                 pss_every: int = 15):
        super().__init__(name="memory-sampler", daemon=True)
        self.processes = processes
        self.databases = tuple(databases)
        self.interval = interval
        self.pss_every = pss_every
        self.rss: list[int] = []
        self.pss: list[int] = []
        self.postgres: list[int] = []
        self.counts: list[int] = []
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        tick = 0
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                procs = {p.pid: p for p in self.processes()}
                procs[me.pid] = me
                rss = pss = 0
                for proc in procs.values():
                    try:
                        if tick % self.pss_every == 0:
                            info = proc.memory_full_info()
                            rss, pss = rss + info.rss, pss + info.pss
                        else:
                            rss += proc.memory_info().rss
                    except psutil.Error:
                        continue
                self.rss.append(rss)
                self.counts.append(len(procs))
                if tick % self.pss_every == 0:
                    self.pss.append(pss)
                    self.postgres.append(self._postgres_rss(psutil))
            except Exception as exc:  # noqa: BLE001 - a bad sample must not end the run
                _say(f"memory sample failed: {exc}")
            tick += 1
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _postgres_rss(self, psutil: Any) -> int:
        total = 0
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                line = " ".join(proc.info["cmdline"] or ())
                if line.startswith("postgres:") and any(db in line for db in self.databases):
                    total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def figures(self) -> dict[str, Any]:
        def gib(values: list[int], how: Callable[[list[int]], float]) -> float:
            return round(how(values) / GIB, 3) if values else 0.0

        return {"samples": len(self.rss), "interval_s": self.interval,
                "rss_peak_gib": gib(self.rss, max), "rss_mean_gib": gib(self.rss, statistics.fmean),
                "pss_peak_gib": gib(self.pss, max), "pss_mean_gib": gib(self.pss, statistics.fmean),
                "postgres_rss_peak_gib": gib(self.postgres, max), "processes_peak": max(self.counts, default=0)}


# -- the run -----------------------------------------------------------------------------------------

class Load:
    def __init__(self, client: AirflowClient, first: dt.date, days: int, deadline: float):
        self.client = client
        self.first = first
        self.days = [first + dt.timedelta(days=i) for i in range(days)]
        self.last = self.days[-1]
        self.deadline = deadline
        self.started = time.monotonic()
        self.phase = "start"
        self._last_progress = 0.0
        self.lost_runs: list[dict[str, Any]] = []

    def runs(self) -> list[dict[str, Any]]:
        return self.client.all_runs()

    def task_instances(self) -> list[dict[str, Any]]:
        return self.client.all_task_instances()

    def progress(self, runs: list[dict[str, Any]], force: bool = False) -> None:
        if not force and time.monotonic() - self._last_progress < 30:
            return
        self._last_progress = time.monotonic()
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for run in runs:
            counts[run["dag_id"]][run["state"]] += 1
        running = self.client.task_instances("~", "~", state=["running", "deferred", "queued", "scheduled"])
        tasks = Counter(t["state"] for t in running)
        dags = "; ".join(f"{dag.replace('delay_model_', '').replace('flights_', '')} "
                         + " ".join(f"{s} {n}" for s, n in sorted(c.items())) for dag, c in sorted(counts.items()))
        _say(f"[{time.monotonic() - self.started:6.0f}s] {self.phase}: runs {dags}; tasks now "
             + (", ".join(f"{s} {n}" for s, n in sorted(tasks.items())) or "none"))

    def wait(self, what: str, done: Callable[[list[dict[str, Any]]], bool],
             recover: Callable[[list[dict[str, Any]]], bool] | None = None, stall_s: float = 180.0) -> None:
        """Poll every run until `done(runs)` holds and no run is queued or running. When nothing runs and no
        run appears for `stall_s`, `recover(runs)` may start what is missing (True), else the wait fails."""
        quiet_since, seen = time.monotonic(), -1
        while True:
            runs = self.runs()
            self.progress(runs)
            busy = [r for r in runs if r["state"] not in RUN_DONE]
            if done(runs) and not busy:
                self.progress(runs, force=True)
                return
            if busy or len(runs) != seen:
                quiet_since, seen = time.monotonic(), len(runs)
            elif time.monotonic() - quiet_since > stall_s:
                if not (recover and recover(runs)):
                    raise TimeoutError(f"{what}: nothing runs or starts for {stall_s:.0f} s, and it is not done")
                quiet_since = time.monotonic()
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"{what} not done before the deadline (--timeout)")
            time.sleep(5)

    def recover_features(self, runs: list[dict[str, Any]]) -> bool:
        """Start the features runs of ingested days the scheduler never created, as the timetable would have
        (one run per partition key), and record them: a lost run is a defect the report names."""
        ingested = [d.isoformat() for d in self.days if d.isoformat() in self.days_done(runs, INGEST, "logical_date")]
        lost = missing_days(runs, FEATURES, "partition_key", ingested)
        for day in lost:
            run = self.client.trigger(FEATURES, partition_key=day,
                                      note="make load: the run the scheduler did not create for this partition")
            self.lost_runs.append({"dag_id": FEATURES, "partition_key": day, "run_id": run["dag_run_id"],
                                   "after_s": round(time.monotonic() - self.started, 1),
                                   "why": "raw_schedule and raw_weather of the day were published, no run followed"})
            _say(f"{FEATURES} {day}: no run after its inputs were published; triggered {run['dag_run_id']}")
        return bool(lost)

    def days_done(self, runs: list[dict[str, Any]], dag_id: str, field: str) -> set[str]:
        return {(r.get(field) or "")[:10] for r in runs if r["dag_id"] == dag_id and r["state"] in RUN_DONE}

    def covers(self, dag_id: str, field: str) -> Callable[[list[dict[str, Any]]], bool]:
        wanted = {d.isoformat() for d in self.days}
        return lambda runs: wanted <= self.days_done(runs, dag_id, field)

    def run_one(self, dag_id: str, conf: dict[str, Any], note: str) -> dict[str, Any]:
        run = self.client.trigger(dag_id, conf=conf, note=note)
        return self.client.wait_for_run(dag_id, run["dag_run_id"], timeout=max(60.0, self.deadline - time.monotonic()),
                                        poll=2.0, echo=None)

    def catch_up(self, train: bool, phases: dict[str, float]) -> list[str]:
        """The four phases; returns what went wrong without stopping the load (the checks still run)."""
        problems: list[str] = []
        clock = time.monotonic()

        def lap(name: str) -> None:
            nonlocal clock
            phases[name] = round(time.monotonic() - clock, 1)
            clock = time.monotonic()
            _say(f"[{time.monotonic() - self.started:6.0f}s] {name} done in {phases[name]:.0f} s")

        self.phase = "deliver"
        self.client.wait_for_dags(list(ALL_DAGS), timeout=300)
        self.client.unpause(PUBLISH)
        final = self.run_one(PUBLISH, {"start": self.first.isoformat(), "days": len(self.days)},
                             f"make load: every feed of {self.first}..{self.last}")
        if final["state"] != "success":
            raise RuntimeError(f"{PUBLISH} {final['dag_run_id']} failed: nothing was delivered")
        lap("deliver")

        self.phase = "ingest + features"
        for dag_id in (SCORING, FEATURES, INGEST):  # listeners first
            self.client.unpause(dag_id)
        self.wait("ingest and features of every day",
                  lambda runs: self.covers(INGEST, "logical_date")(runs) and self.covers(FEATURES, "partition_key")(runs),
                  recover=self.recover_features)
        lap("ingest + features")

        if train:
            self.phase = "first model"
            self.client.unpause(TRAINING)
            final = self.run_one(TRAINING, {"reason": f"make load: the first model, trained on {self.first}..{self.last} "
                                                      "(the last labelled week held out)"}, "make load: the first model")
            tasks = {t["task_id"]: t["state"] for t in self.client.task_instances(TRAINING, final["dag_run_id"])}
            if final["state"] != "success" or tasks.get("promote") != "success":
                problems.append(f"the first model was not promoted ({TRAINING} {final['dag_run_id']}: {tasks})")
            lap("first model")
            self.phase = "scoring"
            final = self.run_one(SCORING, {"start": self.first.isoformat(), "end": self.last.isoformat()},
                                 "make load: score the window with the first champion")
            if final["state"] != "success":
                problems.append(f"{SCORING} {final['dag_run_id']} {final['state']}")
            lap("scoring")
        else:
            _say("no first model: scoring and monitoring are left out (monitoring would wait for predictions)")
            return problems
        self.phase = "monitoring"
        self.client.unpause(MONITORING)  # its catch-up monitors every day of the window, in order
        self.wait("monitoring of every day", self.covers(MONITORING, "logical_date"))
        lap("monitoring")
        return problems

    def failed_log_tails(self, failed: list[dict[str, Any]], lines: int = 25) -> None:
        for ref in failed[:20]:
            try:
                log = self.client.task_log(ref["dag_id"], ref["run_id"], ref["task_id"], ref["try_number"],
                                           ref["map_index"])
                ref["log_tail"] = "\n".join(log.splitlines()[-lines:])
            except AirflowAPIError as exc:
                ref["log_tail"] = f"(log not readable: {exc})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.load", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1),
                        help="the window's first flight date (default 2013-01-01)")
    parser.add_argument("--days", type=int, default=30, help="days in the window (default 30)")
    parser.add_argument("--home", type=Path, default=LOAD_HOME,
                        help="the run's stack homes and lake (<home>/run, emptied first) and reports (<home>/reports)")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds the whole load may take")
    parser.add_argument("--short-window", action="store_true",
                        help="train the first model with the tests' small-window settings (a quick try of every phase)")
    args = parser.parse_args(argv)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: the stack and its databases go too
        signal.signal(stop_signal, signal.default_int_handler)

    from jobs.settings import get_settings
    from tests.integration.stack import POSTGRES_SERVER, IntegrationStack, postgres_database, postgres_skip_reason

    settings = get_settings()
    last = args.start + dt.timedelta(days=args.days - 1)
    problems = [f"the {name} {day} is outside the source" for name, day in (("start", args.start), ("end", last))
                if not settings.data.covers(day)]
    if args.days < 1:
        problems.append("--days must be at least 1")
    if problems or (reason := postgres_skip_reason(POSTGRES_SERVER)):
        parser.error("; ".join(problems) or f"needs PostgreSQL: {reason}")
    # A few days' model: the demo's family too (HGB wins on so few days; scripts/demo.py).
    training_env = {**SHORT_WINDOW_ENV, **DEMO_ENV} if args.short_window else {}
    holdout = int(training_env.get("PIPELINE__TRAINING__HOLDOUT_DAYS", settings.training.holdout_days))
    validation = int(training_env.get("PIPELINE__TRAINING__VALIDATION_DAYS", settings.training.validation_days))
    # The window's last outcomes are not ingested (that is the run of the day after the window): the first
    # model has the window's days but one labelled.
    needed = holdout + validation + 2
    train = args.days >= needed
    if not train:
        _say(f"{args.days} days are too few for the first model (needs {needed}): "
             "training, scoring and monitoring are left out")

    env = {**replay_env(args.start, last), **training_env}
    env.pop("PIPELINE__AIRFLOW__MAX_ACTIVE_RUNS__FLIGHTS_INGEST")  # the settings' catch-up concurrency
    env["PIPELINE__AIRFLOW__END_DATE"] = last.isoformat()  # ingest and monitoring runs of first..last
    run_home = args.home / "run"
    shutil.rmtree(run_home, ignore_errors=True)
    run_home.mkdir(parents=True)
    report: dict[str, Any] = {
        "window": {"first": args.start.isoformat(), "last": last.isoformat(), "days": args.days},
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {"executor": "LocalExecutor", "parallelism": None, "metadata": "PostgreSQL", "mlflow": "PostgreSQL",
                   "spark_connect": True, "warm_runner": True, "env": env, "first_model": train},
        "phases": {}, "error": None,
    }
    started = time.monotonic()
    sampler: MemorySampler | None = None
    code = 1
    try:
        with postgres_database(POSTGRES_SERVER, prefix="mlflow_load") as mlflow_db, \
                IntegrationStack(run_home, postgres_server=POSTGRES_SERVER, spark_connect=True, warm_runner=True,
                                 mlflow_backend_uri=mlflow_db, extra_env=env, echo=_say) as stack:
            config = stack.stack.config
            report["config"]["parallelism"] = config.parallelism
            databases = [url.rsplit("/", 1)[-1] for url in (config.airflow_db_url, mlflow_db)]
            report["config"]["databases"] = databases
            report["phases"]["stack start"] = round(time.monotonic() - started, 1)
            _say(f"stack up in {report['phases']['stack start']:.0f} s: Airflow {config.airflow_url} (metadata "
                 f"{databases[0]}), MLflow {config.mlflow_url} (store {databases[1]}), lake {config.lake_root}")
            sampler = MemorySampler(stack.stack.processes, databases)
            sampler.start()
            load = Load(stack.client(), args.start, args.days, started + args.timeout)
            try:
                problems = load.catch_up(train, report["phases"])
                if problems:
                    report["error"] = "; ".join(problems)
            except (TimeoutError, RuntimeError, AirflowAPIError, KeyboardInterrupt) as exc:
                # The checks still run on what was done (a second Ctrl-C skips them; the stack stops either way).
                report["error"] = f"{load.phase}: {exc or type(exc).__name__}"
                _say(f"stopped: {report['error']}")
            report["catch_up_s"] = round(time.monotonic() - load.started, 1)
            report["lost_runs"] = load.lost_runs
            sampler.stop()
            report["memory"] = sampler.figures()
            report["tasks"] = summarize_tasks(load.task_instances())
            load.failed_log_tails(report["tasks"]["failed"])
            report["runs"] = dict(Counter(f"{r['dag_id']} {r['state']}" for r in load.runs()))
            _say("checking every partition of the lake")
            report["lake"] = check_lake(config.lake_root)
            _say("stopping the stack, dropping its databases")
    except KeyboardInterrupt:
        report["error"] = "interrupted"
        print("[load] interrupted: the stack is stopped and its databases dropped", file=sys.stderr)
    except StackError as exc:
        report["error"] = f"stack: {exc}"
        print(f"[load] {exc}", file=sys.stderr)
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
    report["wall_s"] = round(time.monotonic() - started, 1)
    if "tasks" in report and "lake" in report:
        print(format_summary(report))
        code = 1 if verdict(report) else 0
    reports = args.home / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"load-{args.start}-{args.days}d-{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=1, default=str))
    _say(f"report: {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
