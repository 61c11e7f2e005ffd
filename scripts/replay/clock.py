"""The replay clock: deliver a stretch, wait for the scheduler's runs to close each day, record its time."""
from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.retrain import monitoring_run_id
from scripts.airflow_api import AirflowAPIError, AirflowClient
from scripts.replay.window import (ALL_DAGS, FEATURES, INGEST, MONITORING, PUBLISH, SCORING, STRETCH_DAYS, TERMINAL,
                                   TRAINING, ReplayError, ReplayState, _say, start_stack)
from scripts.stack import Stack, StackConfig


def gate_result(client: AirflowClient, run_id: str) -> dict[str, Any] | None:
    """The gate's result on a `delay_model_training` run's candidate (None: the gate did not decide)."""
    try:
        return (client.xcom_value(TRAINING, run_id, "evaluate_and_gate") or [None])[0]
    except AirflowAPIError:
        return None


def gate_sentence(result: dict[str, Any] | None, reasons: int = 5) -> str | None:
    """"the gate rejected v2: ROC AUC 0.5680 < floor 0.600; ..." (None without a result)."""
    if not result:
        return None
    verdict = "passed" if result.get("passed") else "rejected"
    return f"the gate {verdict} v{result.get('model_version', '?')}: " + "; ".join(result.get("reasons", [])[:reasons])


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
            raise ReplayError(f"the first model was not promoted ({TRAINING} {run['dag_run_id']}: "
                              f"{gate_sentence(gate_result(self.client, run['dag_run_id'])) or tasks}); "
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
        """Close the days in order, to the end of the window (or until `done(state)` says so after a day),
        delivering a stretch at a time and keeping one in flight: the next stretch goes out as soon as the
        day being closed is less than a stretch behind the last day delivered. Ingestion, features and
        scoring of the next days then work while monitoring judges this one, instead of the pipeline
        draining at the end of every stretch (a stretch's first day cost 50-90 s that way). Days scored
        ahead of a promotion are rescored by it (`rescore_ahead`), as before. `stretch` 1: a day at a time."""
        end = dt.date.fromisoformat(self.state.last) + dt.timedelta(days=1)  # the outcomes of the last day
        day = dt.date.fromisoformat(self.state.next_day or self.state.first)
        frontier = max(dt.date.fromisoformat(self.state.delivered_to or "0001-01-01"), day - dt.timedelta(days=1))
        while day <= end and not (done and done(self.state)):
            started = time.monotonic()
            if frontier < min(day + dt.timedelta(days=stretch - 1), end):
                as_of = min(frontier + dt.timedelta(days=stretch), end)
                self.deliver(as_of=as_of.isoformat(), days=(as_of - frontier).days)
                frontier = as_of
                self.state.delivered_to = as_of.isoformat()
                self.state.save(self.state_file)
            record = self.close_day(day, started)
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
