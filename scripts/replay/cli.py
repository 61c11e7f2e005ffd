"""`python -m scripts.replay`: the year's replay from the command line, its summary and the loop's evidence."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from scripts.airflow_api import AirflowAPIError
from scripts.replay.clock import run_replay
from scripts.replay.window import (REPLAY_HOME, STRETCH_DAYS, ReplayError, ReplayState, _say, check_window,
                                   replay_config, replay_env, replay_lock)
from scripts.stack import REPO_ROOT, StackConfig, StackError


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
    import scripts.replay as package  # its docstring is the replay's story

    parser = argparse.ArgumentParser(prog="python -m scripts.replay", description=package.__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example: python -m scripts.replay --start 2013-01-01 --end 2013-02-14 "
                                            "--first-model-days 31")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2013, 12, 31))
    parser.add_argument("--first-model-days", type=int, default=31,
                        help="days delivered before the first model is trained on them (default 31: January)")
    parser.add_argument("--home", type=Path, default=REPLAY_HOME, help="the replay's state (default .replay/)")
    parser.add_argument("--stretch", type=int, default=STRETCH_DAYS,
                        help=f"days delivered at once, one stretch kept ahead of the day being closed "
                             f"(default {STRETCH_DAYS}; 1: a day at a time)")
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
