"""Benchmark: DAG parse cost and the cost of the Great Expectations gate.

Prints, from one run on this machine:
- DagBag fill time for dags/ (fresh interpreter, so imports are counted);
- per feed, ingest+validate time for one real day (jobs.ingest.ingest_feed:
  parse, GX suite, raw partition write) against a plain pandas read of the same
  landing file, as a ratio; the first ingest (GX import and context set-up) is
  reported apart from the warm ones.

    python -m bench.bench_ingest [--ds 2013-03-05] [--repeat 3]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

PARSE_SNIPPET = """
import time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1 = time.perf_counter()
bag = DagBag(dag_folder={dags!r})
t2 = time.perf_counter()
assert not bag.import_errors, bag.import_errors
print(f"{{len(bag.dags)}} {{t1 - t0:.3f}} {{t2 - t1:.3f}}")
"""


def dagbag_fill() -> tuple[int, float, float]:
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "PYTHONPATH": str(REPO_ROOT / "dags"),  # the parse snippet imports the DAG files' `common`
        }
        out = subprocess.run(
            [sys.executable, "-c", PARSE_SNIPPET.format(dags=str(REPO_ROOT / "dags"))],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.split()
    return int(out[-3]), float(out[-2]), float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ds", default="2013-03-05")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    dags, airflow_import_s, fill_s = dagbag_fill()
    print(f"DagBag: {dags} DAG(s) filled in {fill_s * 1000:.0f} ms (after {airflow_import_s:.2f} s importing Airflow)")

    import datetime as dt

    import pandas as pd

    from jobs.ingest import ingest_feed
    from jobs.lake import Lake, landing_key
    from jobs.upstream.publish import publish
    from jobs.settings import get_settings

    settings = get_settings()
    flight_date = dt.date.fromisoformat(args.ds)
    with tempfile.TemporaryDirectory() as root:
        lake = Lake(root)
        publish(lake, flight_date, days=1)
        print(f"\nIngest of {args.ds} (real data), {args.repeat} warm runs each after one cold run:")
        print(f"{'feed':<10}{'rows':>6}{'pandas read':>14}{'ingest cold':>14}{'ingest warm':>14}{'warm/read':>11}")
        for feed in ("schedule", "weather", "flights"):
            data = lake.read_bytes(landing_key(feed, args.ds))
            reads = []
            for _ in range(max(args.repeat, 5)):
                t = time.perf_counter()
                frame = pd.read_csv(io.BytesIO(data))
                reads.append(time.perf_counter() - t)
            t = time.perf_counter()
            ingest_feed(lake, feed, args.ds, settings)
            cold = time.perf_counter() - t
            warm = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                ingest_feed(lake, feed, args.ds, settings)
                warm.append(time.perf_counter() - t)
            read_s, warm_s = statistics.median(reads), statistics.median(warm)
            print(f"{feed:<10}{len(frame):>6}{read_s * 1000:>11.1f} ms{cold:>12.2f} s{warm_s:>12.2f} s{warm_s / read_s:>10.0f}x")


if __name__ == "__main__":
    main()
