"""`make replay`: a year of flights through the real DAGs on the local stack, the replay clock ticking a day at a time.

    python -m scripts.replay [--start 2013-01-01] [--end 2013-12-31] [--first-model-days 31] [--stretch 7]

The replay plays upstream and nothing else; Airflow runs the pipeline as it would live:
1. its own stack (`.replay/`: Airflow home, MLflow home, lake), so the demo's state is not
   touched, with the DAGs' end date at the replay's last day (the schedules' clock) and the lake
   sensors polling each second (they wait in the triggerer, so waiting is cheap);
2. the first model: `replay_publisher` delivers the first month; the scheduler's catch-up of
   `flights_ingest` and the asset-triggered `flights_features` runs build it; one
   `delay_model_training` run (its default windows: the last labelled week held out) makes the
   first champion, and one `flights_batch_scoring` range run scores the month with it;
3. then a stretch of days at a time (`--stretch`, 7 by default; 1 is a day at a time):
   `replay_publisher` with `as_of` = the stretch's last day E delivers what upstream has sent by
   the start of E (schedules and forecasts up to E, outcomes up to E-1). The scheduler's own runs
   do the rest, as in a catch-up: `flights_ingest` for each day (its runs wait in the triggerer for
   the files), `flights_features` and `flights_batch_scoring` for each day (on the Assets, as soon
   as their inputs are there: scoring resolves the champion then), and `delay_model_monitoring`
   day after day, in order (it waits for the day's predictions), whose decision may trigger
   `delay_model_training`. A monitoring run that started a training waits for it, and a promotion
   rescores the days scored ahead of monitoring (`jobs.score --ahead`): every day is scored by the
   champion serving at its start, and a training started on D changes later days only, as a day at
   a time would have. A day is closed once its monitoring has finished and no training is queued
   or running. The weekly training schedule cannot fire on the wall clock (its dates end with the
   replay's); monitoring asks the same decision every day, model age included (jobs/retrain.py).

Interrupted (Ctrl-C, a crash, a reboot), it resumes where it stopped: the first day not closed is in
`.replay/state.json`, deliveries are never rewritten, and each day's runs are the scheduler's,
kept in Airflow's database. A failed run stops the replay with the run named (fix, clear it in
the UI, run `make replay` again). A second replay while one runs, or while the demo's stack
runs, is refused before anything starts.

Each day's wall time (since the day before it closed) and its task time by DAG go to
`.replay/state.json`; the summary prints the year's time and its breakdown by step.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jobs.retrain import monitoring_run_id
from scripts.airflow_api import AirflowAPIError, AirflowClient
from scripts.stack import REPO_ROOT, Stack, StackConfig, StackError

REPLAY_HOME = REPO_ROOT / ".replay"
PUBLISH, INGEST, FEATURES, SCORING = "replay_publisher", "flights_ingest", "flights_features", "flights_batch_scoring"
MONITORING, TRAINING = "delay_model_monitoring", "delay_model_training"
ALL_DAGS = (PUBLISH, INGEST, FEATURES, SCORING, MONITORING, TRAINING)
TERMINAL = ("success", "failed")
# The pipeline's settings the replay changes, each for a reason: the DAGs' dates end with the
# replay (the schedules' clock), the sensors' waits are seconds, not hours, and a few ingest runs
# work at once (a stretch delivers several days).
POKE_INTERVAL_S, SENSOR_TIMEOUT_S, INGEST_RUNS_AHEAD = 1, 900, 3
STRETCH_DAYS = 7
# The settings a window of a few weeks needs (the tests and benchmarks of the loop): a 3-day holdout
# and 2 validation days, and a gate whose floor and slice sizes fit a model trained on under two weeks.
SHORT_WINDOW_ENV = {"PIPELINE__TRAINING__HOLDOUT_DAYS": "3", "PIPELINE__TRAINING__VALIDATION_DAYS": "2",
                    "PIPELINE__GATE__AUC_FLOOR": "0.55", "PIPELINE__GATE__SLICE_MIN_ROWS": "300"}


class ReplayError(RuntimeError):
    """The replay cannot start or go on; the message says why and what to do."""


def _say(message: str) -> None:
    print(f"[replay] {message}", flush=True)


@dataclasses.dataclass
class ReplayState:
    """Where the replay clock stands (`.replay/state.json`): what resumes an interrupted replay."""

    first: str
    last: str
    first_model_days: int
    next_day: str | None = None  # the next as-of day to deliver; None: the first model is not made yet
    started_at: float = dataclasses.field(default_factory=time.time)
    elapsed_s: float = 0.0  # wall seconds of work so far, over every session of the replay
    days: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    first_model: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ReplayState | None:
        return cls(**json.loads(path.read_text())) if path.is_file() else None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        os.replace(tmp, path)


def replay_env(first: dt.date, last: dt.date, first_served: dt.date | None = None) -> dict[str, str]:
    """The pipeline settings a replay's stack runs with (the clock's start and end, the sensors' pace).

    `first_served`: the first day after the first model's window. Monitoring starts there: the first
    model's own days were scored after the fact by a model trained on them, so judging them says nothing
    (and cost the demo four minutes of monitoring runs)."""
    served = {"PIPELINE__AIRFLOW__START_DATES__" + MONITORING.upper(): first_served.isoformat()} if first_served else {}
    return {**served,
        # The scheduler's catch-up starts with the window, and the window is the source: nothing before
        # its first day lands (the first day's wait for the outcomes of its eve skips at once, as on Jan 1).
        "PIPELINE__AIRFLOW__START_DATE": first.isoformat(),
        "PIPELINE__DATA__FIRST_FLIGHT_DATE": first.isoformat(),
        # The run of last+1 ingests the outcomes of `last`; monitoring's last run is on that day too.
        "PIPELINE__AIRFLOW__END_DATE": (last + dt.timedelta(days=1)).isoformat(),
        "PIPELINE__AIRFLOW__MAX_ACTIVE_RUNS__FLIGHTS_INGEST": str(INGEST_RUNS_AHEAD),
        "PIPELINE__SENSORS__POKE_INTERVAL_S": str(POKE_INTERVAL_S),
        "PIPELINE__SENSORS__TIMEOUT_S": str(SENSOR_TIMEOUT_S),
    }


def replay_config(first: dt.date, last: dt.date, home: Path = REPLAY_HOME,
                  first_served: dt.date | None = None) -> StackConfig:
    """The demo's stack shape (ports, Spark Connect, warm runner) with the replay's homes, lake and clock."""
    base = StackConfig.local()
    return dataclasses.replace(base, airflow_home=home / "airflow", mlflow_home=home / "mlflow", lake_root=str(home / "lake"),
                               extra_env={**base.extra_env, **replay_env(first, last, first_served)})


@contextlib.contextmanager
def replay_lock(home: Path) -> Iterator[None]:
    """One replay at a time on this checkout."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "replay.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise ReplayError(f"another replay is running (pid {handle.read().strip() or '?'}); "
                              "wait for it or stop it (Ctrl-C) first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def check_window(first: dt.date, last: dt.date, first_model_days: int) -> None:
    """Refuse a window the source cannot play, before anything starts."""
    from jobs.settings import get_settings

    data = get_settings().data
    problems = []
    if last < first:
        problems.append(f"the end {last} is before the start {first}")
    for name, day in (("start", first), ("end", last)):
        if not data.covers(day):
            problems.append(f"the {name} {day} is outside the source ({data.first_flight_date}..{data.last_flight_date})")
    training = get_settings().training
    needed = training.holdout_days + training.validation_days + 1
    if first_model_days < needed:
        problems.append(f"--first-model-days {first_model_days}: the first model needs at least {needed} days "
                        f"({training.holdout_days} held out, {training.validation_days} for early stopping, "
                        "one to fit)")
    elif not problems and (last - first).days + 1 <= first_model_days:
        problems.append(f"the window {first}..{last} leaves no day after the first model's {first_model_days} days")
    if problems:
        raise ReplayError("bad replay window: " + "; ".join(problems))


def start_stack(config: StackConfig) -> Stack:
    """Start the replay's stack; refuse when the demo's (another Airflow home) holds the ports."""
    demo = Stack(StackConfig.local(), echo=None)
    if demo.status().running and demo.config.airflow_home != config.airflow_home:
        raise ReplayError("the demo's stack is running on the same ports (`make stop` first, then `make replay`)")
    stack = Stack(config)
    stack.start()
    return stack


class Replay:
    def __init__(self, client: AirflowClient, state: ReplayState, state_file: Path, timeout: float):
        self.client = client
        self.state = state
        self.state_file = state_file
        self.timeout = timeout

    # -- runs -------------------------------------------------------------------------------

    def _runs_on(self, dag_id: str, day: dt.date, hour: int = 0) -> list[dict[str, Any]]:
        return self.client.runs_at(dag_id, dt.datetime.combine(day, dt.time(hour), tzinfo=dt.timezone.utc))

    def _partition_runs(self, dag_id: str, day: dt.date) -> list[dict[str, Any]]:
        runs = self.client.list_runs(dag_id, limit=50)  # a stretch's days, and rescoring runs, after it
        return [run for run in runs if (run.get("partition_key") or "")[:10] == day.isoformat()]

    def day_runs(self, day: dt.date) -> list[tuple[str, dict[str, Any]]]:
        """The runs of the pipeline for flight date `day` (a training only when its monitoring started one)."""
        runs = [(INGEST, r) for r in self._runs_on(INGEST, day)]
        runs += [(dag, r) for dag in (FEATURES, SCORING) for r in self._partition_runs(dag, day)]
        runs += [(MONITORING, r) for r in self._runs_on(MONITORING, day, hour=3)]
        with contextlib.suppress(AirflowAPIError):  # 404: monitoring started no training that day
            runs.append((TRAINING, self.client.get_run(TRAINING, monitoring_run_id(day.isoformat()))))
        return runs

    def _wait(self, what: str, ready: Any, poll: float = 1.0) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            found = ready()
            if found:
                return found
            if time.monotonic() > deadline:
                raise ReplayError(f"{what}: not done after {self.timeout:.0f} s (see the Airflow UI)")
            time.sleep(poll)

    def _fail_if_failed(self, day: dt.date) -> None:
        """A failed run of the day stops the replay, naming it (and the failed tasks)."""
        for dag_id, run in self.day_runs(day):
            if run["state"] == "failed":
                tasks = [t["task_id"] for t in self.client.task_instances(dag_id, run["dag_run_id"])
                         if t["state"] == "failed"]
                raise ReplayError(f"{dag_id} run {run['dag_run_id']} failed (tasks: {', '.join(tasks) or '?'}); "
                                  "see its log in the UI, clear it once fixed, and run `make replay` again")

    def deliver(self, **conf: Any) -> None:
        run = self.client.trigger(PUBLISH, conf=conf, note=f"make replay: {conf}")
        final = self.client.wait_for_run(PUBLISH, run["dag_run_id"], timeout=self.timeout, poll=0.5, echo=None)
        if final["state"] != "success":
            raise ReplayError(f"{PUBLISH} run {run['dag_run_id']} failed: see its log in the UI")

    def training_active(self) -> bool:
        return bool(self.client.list_runs(TRAINING, state=["queued", "running"], limit=1))

    # -- phases -----------------------------------------------------------------------------

    def first_model(self) -> None:
        """Deliver the first month, let the scheduler build it, train the first champion, score the month."""
        first = dt.date.fromisoformat(self.state.first)
        days = self.state.first_model_days
        month_end = first + dt.timedelta(days=days - 1)
        started = time.monotonic()
        _say(f"first model: delivering {first}..{month_end} ({days} days)")
        self.deliver(start=first.isoformat(), days=days)
        for dag_id in (SCORING, FEATURES, INGEST):  # listeners first
            self.client.unpause(dag_id)
        for offset in range(days):
            day = first + dt.timedelta(days=offset)
            self._wait(f"{INGEST} {day}", lambda d=day: any(r["state"] in TERMINAL for r in self._runs_on(INGEST, d)))
            self._wait(f"{FEATURES} {day}",
                       lambda d=day: any(r["state"] in TERMINAL for r in self._partition_runs(FEATURES, d)))
            self._fail_if_failed(day)
            if offset % 7 == 6 or offset == days - 1:
                _say(f"[{time.monotonic() - started:5.0f}s] ingested and built {first}..{day}")
        self.client.unpause(TRAINING)
        run = self.client.trigger(TRAINING, conf={"reason": f"make replay: the first model, trained on {first}.."
                                                            f"{month_end} (the last labelled week held out)"},
                                  note="make replay: the first model")
        final = self.client.wait_for_run(TRAINING, run["dag_run_id"], timeout=self.timeout, echo=None)
        tasks = {t["task_id"]: t["state"] for t in self.client.task_instances(TRAINING, run["dag_run_id"])}
        if final["state"] != "success" or tasks.get("promote") != "success":
            raise ReplayError(f"the first model was not promoted ({TRAINING} {run['dag_run_id']}: {tasks}); "
                              "see the evaluate_and_gate log")
        _say(f"[{time.monotonic() - started:5.0f}s] first champion promoted ({run['dag_run_id']})")
        scoring = self.client.trigger(SCORING, conf={"start": first.isoformat(), "end": month_end.isoformat()},
                                      note="make replay: score the first month with the first champion")
        if self.client.wait_for_run(SCORING, scoring["dag_run_id"], timeout=self.timeout, echo=None)["state"] != "success":
            raise ReplayError(f"{SCORING} {scoring['dag_run_id']} failed: see its log in the UI")
        self.client.unpause(MONITORING)  # its catch-up monitors every day from its start date on, in order
        self.state.first_model = {"training_run": run["dag_run_id"], "seconds": round(time.monotonic() - started, 1)}
        self.state.next_day = (month_end + dt.timedelta(days=1)).isoformat()
        self.state.elapsed_s += time.monotonic() - started
        self.state.save(self.state_file)

    def tick(self, day: dt.date) -> dict[str, Any]:
        """One day of the clock alone: deliver what is due at its start, wait until the loop has closed it."""
        started = time.monotonic()
        self.deliver(as_of=day.isoformat())
        return self.close_day(day, started)

    def close_day(self, day: dt.date, started: float) -> dict[str, Any]:
        """Wait until the loop has closed `day` (delivered already): its monitoring finished, no training active."""
        last = dt.date.fromisoformat(self.state.last)

        def monitored() -> list[dict[str, Any]]:
            self._fail_if_failed(day)
            return [r for r in self._runs_on(MONITORING, day, hour=3) if r["state"] in TERMINAL]

        monitoring = self._wait(f"{MONITORING} {day}", monitored) if day <= last else []
        if day > last:  # the outcomes of the last day: ingestion only
            self._wait(f"{INGEST} {day}", lambda: any(r["state"] in TERMINAL for r in self._runs_on(INGEST, day)))
        self._wait(f"{TRAINING} runs started on {day}", lambda: not self.training_active())
        decision = self.decision(monitoring[0]["dag_run_id"]) if monitoring else None
        if decision and decision.get("retrain"):
            self._check_training(day)
        record = {"wall_s": round(time.monotonic() - started, 2), **self.task_seconds(day),
                  "monitoring": monitoring[0]["state"] if monitoring else None,
                  "decision": decision}
        return record

    def _check_training(self, day: dt.date) -> None:
        """The training monitoring started on `day` ran (its tasks exist and it did not fail)."""
        run_id = monitoring_run_id(day.isoformat())
        try:
            run = self.client.get_run(TRAINING, run_id)
        except AirflowAPIError as exc:
            raise ReplayError(f"monitoring of {day} decided to retrain, but there is no {TRAINING} run {run_id}") from exc
        tasks = self.client.task_instances(TRAINING, run_id)
        if run["state"] != "success" or not tasks:
            raise ReplayError(f"{TRAINING} run {run_id} (started by monitoring of {day}) is {run['state']} with "
                              f"{len(tasks)} task(s): see it in the UI, clear it once fixed, and run again")

    def decision(self, run_id: str) -> dict[str, Any] | None:
        try:
            value = self.client.xcom_value(MONITORING, run_id, "monitor")
        except AirflowAPIError:
            return None  # monitor skipped (no champion, no features) or failed
        result = (value or [{}])[0]
        return {key: result.get(key) for key in ("model_version", "drift_share", "dataset_drift", "served_auc",
                                                 "retrain", "decision")}

    def task_seconds(self, day: dt.date) -> dict[str, float]:
        """Task time of the day's runs by step (the DAG's tasks summed; training where started).

        A sensor's duration is mostly waiting for the clock's delivery (in the triggerer, no worker
        held): it is kept apart, as `wait_s`, not counted as the step's work."""
        seconds: dict[str, float] = defaultdict(float)
        for dag_id, run in self.day_runs(day):
            for task in self.client.task_instances(dag_id, run["dag_run_id"]):
                name = "wait_s" if task["task_id"].split(".")[-1].startswith("wait_for") else f"{dag_id}_s"
                seconds[name] += float(task.get("duration") or 0.0)
        return {key: round(value, 2) for key, value in seconds.items()}

    def loop(self, done: Callable[[ReplayState], bool] | None = None, stretch: int = STRETCH_DAYS) -> None:
        """Deliver a stretch at a time and close its days in order, to the end of the window (or until
        `done(state)` says so after a day)."""
        end = dt.date.fromisoformat(self.state.last) + dt.timedelta(days=1)  # the outcomes of the last day
        day = dt.date.fromisoformat(self.state.next_day or self.state.first)
        while day <= end and not (done and done(self.state)):
            started = time.monotonic()
            as_of = min(day + dt.timedelta(days=stretch - 1), end)
            self.deliver(as_of=as_of.isoformat(), days=(as_of - day).days + 1)
            while day <= as_of and not (done and done(self.state)):
                record = self.close_day(day, started)
                started = time.monotonic()
                self.state.days[day.isoformat()] = record
                self.state.elapsed_s += record["wall_s"]
                self.state.next_day = (day + dt.timedelta(days=1)).isoformat()
                self.state.save(self.state_file)
                decision = record.get("decision") or {}
                auc = decision.get("served_auc")
                _say(f"{day} {record['wall_s']:5.1f}s  v{decision.get('model_version', '-')}  drift "
                     f"{decision.get('drift_share') if decision.get('drift_share') is not None else '-'}  served "
                     f"AUC {'-' if auc is None else f'{auc:.3f}'}  {(decision.get('decision') or '')[:110]}")
                day += dt.timedelta(days=1)


def run_replay(config: StackConfig, state: ReplayState, state_file: Path, timeout: float,
               done: Callable[[ReplayState], bool] | None = None, stretch: int = STRETCH_DAYS) -> Stack:
    """Start the stack of `config`, then make the first model (unless the state has it) and tick the clock."""
    stack = start_stack(config)
    client = stack.client()
    client.wait_for_dags(list(ALL_DAGS), timeout=300)
    client.unpause(PUBLISH)
    state.save(state_file)  # from now on this home is this window's: an interrupted first model resumes too
    replay = Replay(client, state, state_file, timeout)
    if state.next_day is None:
        replay.first_model()
    replay.loop(done, stretch)
    return stack


def report_months(state: ReplayState) -> tuple[int, int] | None:
    """The months the loop's evidence compares: from the second month after the first model's (Jan -> Mar)."""
    first_loop_day = dt.date.fromisoformat(state.first) + dt.timedelta(days=state.first_model_days)
    start_month, last = first_loop_day.month + 1, dt.date.fromisoformat(state.last)
    return (start_month, last.month) if first_loop_day.year == last.year and start_month <= last.month else None


def report_replay(config: StackConfig, state: ReplayState) -> None:
    """`python -m jobs.replay_report` on the replay's lake and MLflow (its step log goes to the terminal)."""
    import subprocess

    months = report_months(state)
    if months is None:
        _say("the window is too short for the loop's evidence (it compares months after the first model's next)")
        return
    year = dt.date.fromisoformat(state.first).year
    _say(f"the loop's evidence: live vs frozen vs calendar, months {months[0]}-{months[1]} of {year}")
    done = subprocess.run([sys.executable, "-m", "jobs.replay_report", "--year", str(year),
                           "--months", f"{months[0]}-{months[1]}"], cwd=REPO_ROOT,
                          env={**config.base_env(), **replay_env(dt.date.fromisoformat(state.first),
                                                                 dt.date.fromisoformat(state.last))})
    if done.returncode != 0:
        raise ReplayError(f"jobs.replay_report exited with {done.returncode} (see above)")


def breakdown(state: ReplayState) -> dict[str, Any]:
    """The replay's time and its task time by step, from the state's day records."""
    days = list(state.days.values())
    steps: dict[str, float] = defaultdict(float)
    for record in days:
        for key, value in record.items():
            if key.endswith("_s") and key not in ("wall_s", "wait_s"):
                steps[key[:-2]] += value
    return {"days": len(days), "wall_s": round(sum(r["wall_s"] for r in days), 1),
            "first_model_s": state.first_model.get("seconds"), "elapsed_s": round(state.elapsed_s, 1),
            "task_s_by_dag": {k: round(v, 1) for k, v in sorted(steps.items())},
            "trainings": [d for d, r in state.days.items() if (r.get("decision") or {}).get("retrain")]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.replay", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example: python -m scripts.replay --start 2013-01-01 --end 2013-02-14 "
                                            "--first-model-days 31")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2013, 12, 31))
    parser.add_argument("--first-model-days", type=int, default=31,
                        help="days delivered before the first model is trained on them (default 31: January)")
    parser.add_argument("--home", type=Path, default=REPLAY_HOME, help="the replay's state (default .replay/)")
    parser.add_argument("--stretch", type=int, default=STRETCH_DAYS,
                        help=f"days delivered at once (default {STRETCH_DAYS}; 1: a day at a time)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds any one wait may take")
    parser.add_argument("--stop", action="store_true", help="stop the replay's stack when done")
    args = parser.parse_args(argv)
    if args.stretch < 1:
        parser.error("--stretch must be at least 1 (days delivered at once)")
    # Ctrl-C, and SIGINT or SIGTERM from a supervisor, stop the clock (the day in flight runs again on resume); a
    # replay started in the background (`make replay &`) inherits SIGINT ignored, hence the handlers.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.default_int_handler)
    try:
        check_window(args.start, args.end, args.first_model_days)
        with replay_lock(args.home):
            state_file = args.home / "state.json"
            state = ReplayState.load(state_file)
            if state and (state.first, state.last, state.first_model_days) != (
                    args.start.isoformat(), args.end.isoformat(), args.first_model_days):
                raise ReplayError(f"{args.home} holds a replay of {state.first}..{state.last} (first model "
                                  f"{state.first_model_days} days); remove {args.home} to start another")
            state = state or ReplayState(args.start.isoformat(), args.end.isoformat(), args.first_model_days)
            _say(("resuming at " + state.next_day) if state.next_day else f"replaying {args.start}..{args.end}")
            first_served = args.start + dt.timedelta(days=args.first_model_days)
            stack = run_replay(replay_config(args.start, args.end, args.home, first_served), state, state_file, args.timeout,
                               stretch=args.stretch)
            summary = breakdown(state)
            (args.home / "summary.json").write_text(json.dumps(summary, indent=1))
            _say(f"done: {summary['days']} days in {summary['elapsed_s'] / 60:.1f} min "
                 f"(first model {summary['first_model_s']} s); task time by DAG: {summary['task_s_by_dag']}; "
                 f"trainings triggered on {', '.join(summary['trainings']) or 'no day'}")
            report_replay(stack.config, state)
            user, password = stack.admin_credentials()
            _say(f"Airflow {stack.config.airflow_url} (login {user} / {password}), MLflow {stack.config.mlflow_url}, "
                 f"lake {stack.config.lake_root}")
            if args.stop:
                stack.stop()
    except (ReplayError, StackError, AirflowAPIError) as exc:
        print(f"[replay] {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[replay] interrupted: `make replay` resumes where it stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
