"""`make replay`: a year of flights through the real DAGs on the local stack, the replay clock delivering a stretch of days ahead.

    python -m scripts.replay [--start 2013-01-01] [--end 2013-12-31] [--first-model-days 31] [--stretch 7]

The replay plays upstream and nothing else; Airflow runs the pipeline as it would live:
1. its own stack (`.replay/`: Airflow home, MLflow home, lake), so the demo's state is not
   touched, with the DAGs' end date at the replay's last day (the schedules' clock) and the lake
   sensors polling each second (they wait in the triggerer, so waiting is cheap);
2. the first model: `replay_publisher` delivers the first month; the scheduler's catch-up of
   `flights_ingest` and the asset-triggered `flights_features` runs build it; one
   `delay_model_training` run (its default windows: the last labelled week held out) makes the
   first champion, and one `flights_batch_scoring` range run scores the month with it;
3. then a stretch of days at a time (`--stretch`, 7 by default; 1 is a day at a time), one stretch
   kept in flight: `replay_publisher` with `as_of` = the stretch's last day E delivers what upstream
   has sent by the start of E (schedules and forecasts up to E, outcomes up to E-1), and the next
   stretch goes out as soon as the day being closed is less than a stretch behind E, so the
   pipeline never drains while monitoring judges the days in order. The scheduler's own runs
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

from scripts.replay.window import (ALL_DAGS, FEATURES, INGEST, MONITORING, PUBLISH, REPLAY_HOME, SCORING,
                                   SHORT_WINDOW_ENV, STRETCH_DAYS, TRAINING, ReplayError, ReplayState, check_window,
                                   replay_config, replay_env, replay_lock, start_stack)
from scripts.replay.clock import Replay, run_replay
from scripts.replay.cli import breakdown, main, report_months, report_replay
from scripts.stack import REPO_ROOT

__all__ = ["ALL_DAGS", "FEATURES", "INGEST", "MONITORING", "PUBLISH", "REPLAY_HOME", "REPO_ROOT", "SCORING",
           "SHORT_WINDOW_ENV", "STRETCH_DAYS", "TRAINING", "Replay", "ReplayError", "ReplayState", "breakdown",
           "check_window", "main", "replay_config", "replay_env", "replay_lock", "report_months", "report_replay",
           "run_replay", "start_stack"]
