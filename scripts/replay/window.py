"""The replay's window, state, settings and locks: what is checked and set up before the clock starts."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scripts.stack import REPO_ROOT, Stack, StackConfig

REPLAY_HOME = REPO_ROOT / ".replay"
PUBLISH, INGEST, FEATURES, SCORING = "replay_publisher", "flights_ingest", "flights_features", "flights_batch_scoring"
MONITORING, TRAINING = "delay_model_monitoring", "delay_model_training"
ALL_DAGS = (PUBLISH, INGEST, FEATURES, SCORING, MONITORING, TRAINING)
TERMINAL = ("success", "failed")
# The pipeline's settings the replay changes, each for a reason: the DAGs' dates end with the
# replay (the schedules' clock), the sensors' waits are seconds, not hours, and a few ingest and
# features runs work at once (a stretch delivers several days; a day's features read raw partitions
# only, so two days build side by side, and scoring's catch-up then scores several in one pass).
POKE_INTERVAL_S, SENSOR_TIMEOUT_S, INGEST_RUNS_AHEAD, FEATURES_RUNS_AHEAD = 1, 900, 3, 2
STRETCH_DAYS = 7
SCHEDULER_IDLE_SLEEP_S = 0.2
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
    next_day: str | None = None  # the next day to close; None: the first model is not made yet
    delivered_to: str | None = None  # the last as-of day delivered (the clock keeps a stretch ahead of next_day)
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
        "PIPELINE__AIRFLOW__MAX_ACTIVE_RUNS__FLIGHTS_FEATURES": str(FEATURES_RUNS_AHEAD),
        "PIPELINE__SENSORS__POKE_INTERVAL_S": str(POKE_INTERVAL_S),
        "PIPELINE__SENSORS__TIMEOUT_S": str(SENSOR_TIMEOUT_S),
        # The scheduler sleeps this long after a loop that found nothing to do (Airflow's default: 1 s).
        # A catch-up is a chain of short tasks, each handed over by a loop: at 1 s monitoring's
        # runs waited about a second between tasks and two between runs.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": str(SCHEDULER_IDLE_SLEEP_S),
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
