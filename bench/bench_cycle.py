"""One day's cycle of the pipeline three ways: through the running stack, as CLIs, and warm in one process.

    python -m bench.bench_cycle [--days 3] [--home .bench/cycle]

A day's cycle is what the replay clock's tick starts (scripts/replay/): the delivery of what
upstream has sent by the start of D, ingestion of its three feeds, the features of D, scoring
and monitoring of D. Measured on the same days, from the same lake state:
1. **Airflow**: the replay's tick through the running stack (the DAGs, the scheduler, the
   triggerer, the step runner the stack gives its tasks);
2. **CLIs**: the same steps as fresh `python -m jobs.<step>` processes, one after the other, as a
   person runs them in a terminal (clients of the stack's MLflow and Spark Connect server);
3. **warm floor**: the same steps' `main()` called in this one process, everything imported
   once beforehand: no interpreter start, no import.
Each is timed in wall seconds and in CPU seconds of the whole machine (/proc/stat: the stack's
processes, the Spark Connect JVM and the steps together), so run it on an otherwise idle
machine. Printed per day and as ratios: Airflow / CLIs (goal <= 1.2) and CLIs / warm floor
(goal <= 2). The stack and its first model come from a short replay into `--home` (reused by a
second run): the first model on Jan 1-12 with a small-data holdout, then one untimed tick.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRST, FIRST_MODEL_DAYS = dt.date(2013, 1, 1), 12
# The first model is trained on twelve days: the holdout and validation windows shrink with them.


def day_steps(day: dt.date) -> list[tuple[str, list[str]]]:
    """The steps of one day's cycle, as `jobs.<step>` and its arguments, in order."""
    ds, before = day.isoformat(), (day - dt.timedelta(days=1)).isoformat()
    return [("publish", ["--as-of", ds]),
            ("ingest", ["--ds", ds, "--feed", "schedule"]), ("ingest", ["--ds", ds, "--feed", "weather"]),
            ("ingest", ["--ds", before, "--feed", "flights"]),
            ("features", ["--ds", ds]), ("score", ["--ds", ds]), ("monitor", ["--ds", ds])]


def machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine since boot (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measured(run: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.monotonic(), machine_cpu_s()
    result = run()
    return time.monotonic() - wall, machine_cpu_s() - cpu, result


def run_clis(day: dt.date, env: dict[str, str]) -> list[int]:
    codes = []
    for step, args in day_steps(day):
        done = subprocess.run([sys.executable, "-m", f"jobs.{step}", *args], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        codes.append(done.returncode)
    return codes


def run_warm(day: dt.date) -> list[int]:
    codes = []
    for step, args in day_steps(day):
        try:
            code = importlib.import_module(f"jobs.{step}").main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        codes.append(int(code or 0))
    return codes


def preload() -> None:
    """Import what the steps import, so the warm floor pays no import (jobs.warm's list)."""
    from jobs.warm import PRELOAD, preload as warm_preload

    warm_preload(PRELOAD)
    for step in ("publish", "ingest", "features", "score", "monitor"):
        importlib.import_module(f"jobs.{step}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_cycle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=3, help="days timed each way (default 3)")
    parser.add_argument("--home", type=Path, default=REPO_ROOT / ".bench" / "cycle")
    args = parser.parse_args(argv)
    from scripts.replay import SHORT_WINDOW_ENV

    os.environ.update(SHORT_WINDOW_ENV)

    from scripts.replay import Replay, ReplayState, replay_config, start_stack

    first_loop_day = FIRST + dt.timedelta(days=FIRST_MODEL_DAYS)
    days = [first_loop_day + dt.timedelta(days=1 + i) for i in range(args.days)]
    last = days[-1] + dt.timedelta(days=30)  # the DAGs' dates reach past the timed days
    state_file = args.home / "state.json"
    state = ReplayState.load(state_file) or ReplayState(FIRST.isoformat(), last.isoformat(), FIRST_MODEL_DAYS)
    config = replay_config(FIRST, dt.date.fromisoformat(state.last), args.home, first_loop_day)
    stack = start_stack(config)
    client = stack.client()
    client.wait_for_dags(["replay_publisher", "flights_ingest", "delay_model_monitoring"], timeout=300)
    client.unpause("replay_publisher")
    replay = Replay(client, state, state_file, timeout=3600)
    if state.next_day is None:
        print("[bench] first model (untimed)", flush=True)
        replay.first_model()
    lake = Path(config.lake_root)
    if (state.next_day or "") <= first_loop_day.isoformat():
        print("[bench] first tick: the first month's monitoring catch-up (untimed)", flush=True)
        replay.tick(first_loop_day)
        state.next_day = days[0].isoformat()
        state.save(state_file)
    if state.next_day != days[0].isoformat():
        print(f"[bench] {args.home} is past {days[0]}: remove it to measure again", file=sys.stderr)
        return 1
    snapshot = args.home / "lake_before"
    shutil.rmtree(snapshot, ignore_errors=True)
    shutil.copytree(lake, snapshot)

    rows: list[dict[str, Any]] = []
    for day in days:
        wall, cpu, record = measured(lambda d=day: replay.tick(d))
        rows.append({"day": day.isoformat(), "way": "airflow", "wall_s": wall, "cpu_s": cpu,
                     "decision": (record.get("decision") or {}).get("decision")})
        state.next_day = (day + dt.timedelta(days=1)).isoformat()
        state.save(state_file)

    env = {**os.environ, **config.pipeline_env_vars()}
    cli_lake = args.home / "lake_cli"
    shutil.rmtree(cli_lake, ignore_errors=True)
    shutil.copytree(snapshot, cli_lake)
    env["LAKE_ROOT"] = str(cli_lake)
    for day in days:
        wall, cpu, codes = measured(lambda d=day: run_clis(d, env))
        rows.append({"day": day.isoformat(), "way": "clis", "wall_s": wall, "cpu_s": cpu, "exit_codes": codes})

    warm_lake = args.home / "lake_warm"
    shutil.rmtree(warm_lake, ignore_errors=True)
    shutil.copytree(snapshot, warm_lake)
    os.environ.update({**config.pipeline_env_vars(), "LAKE_ROOT": str(warm_lake)})
    preload()
    for day in days:
        wall, cpu, codes = measured(lambda d=day: run_warm(d))
        rows.append({"day": day.isoformat(), "way": "warm", "wall_s": wall, "cpu_s": cpu, "exit_codes": codes})

    totals = {way: {m: sum(r[m] for r in rows if r["way"] == way) / len(days) for m in ("wall_s", "cpu_s")}
              for way in ("airflow", "clis", "warm")}
    print(f"\none day's cycle, mean of {len(days)} day(s) ({days[0]}..{days[-1]}); machine-wide CPU")
    print(f"{'way':<8} {'wall s/day':>10} {'CPU s/day':>10}")
    for way, total in totals.items():
        print(f"{way:<8} {total['wall_s']:>10.1f} {total['cpu_s']:>10.1f}")
    ratios = {f"{a}/{b}": {m: totals[a][m] / totals[b][m] for m in ("wall_s", "cpu_s")}
              for a, b in (("airflow", "clis"), ("clis", "warm"), ("airflow", "warm"))}
    for name, ratio in ratios.items():
        goal = {"airflow/clis": " (goal <= 1.2)", "clis/warm": " (goal <= 2)"}.get(name, "")
        print(f"{name:<14} wall {ratio['wall_s']:.2f}x  CPU {ratio['cpu_s']:.2f}x{goal}")
    for row in rows:
        if any(code not in (0, 4) for code in row.get("exit_codes", [])):
            print(f"note: {row['way']} {row['day']} exit codes {row['exit_codes']}")
    (args.home / "bench_cycle.json").write_text(json.dumps({"rows": rows, "totals": totals, "ratios": ratios},
                                                           indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
