"""Benchmark: the fixed cost of a scoring task's Python worker, pyspark's own daemon vs jobs.spark_worker's.

A day's scoring is one small Spark job; its cost is mostly the Python worker's start: the
worker imports pandas, pyarrow, MLflow and torch before the model predicts a row, and an
idle worker is reaped between two days. Each side runs in its own process with a local[1]
session whose `spark.python.daemon.module` is the side's, and `spark.python.worker.reuse`
false, so that every task forks a fresh worker, as each day's first task does. A warm-up job
starts the daemon; then `--rounds` jobs, interleaved with the other side's, each run a pandas
UDF that imports what jobs.score's UDF imports. Prints the median job time per side and the
ratio preloading / pyspark (lower is better).

    python -m bench.bench_spark_worker [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

SIDE = r"""
import json, sys, time
from jobs.settings import SparkSettings
from jobs.spark import spark_session
import pandas as pd
from pyspark.sql.functions import pandas_udf

daemon, rounds = sys.argv[1], int(sys.argv[2])
spark = spark_session("bench-worker", SparkSettings(master="local[1]", driver_memory="1g", shuffle_partitions=1,
                      ui_enabled=False, conf={"spark.python.daemon.module": daemon,
                                              "spark.python.worker.reuse": "false"}))

@pandas_udf("double")
def score(values: pd.Series) -> pd.Series:
    import mlflow.pyfunc  # noqa: F401 - what jobs.score's UDF imports
    import torch
    return values.astype("float64") * float(torch.ones(1).item())

frame = spark.range(1000, numPartitions=1)
frame.select(score("id")).collect()  # the daemon starts
times = []
for _ in range(rounds):
    input()  # the parent interleaves the sides
    started = time.perf_counter()
    frame.select(score("id")).collect()
    times.append(time.perf_counter() - started)
    print(json.dumps(times[-1]), flush=True)
"""

SIDES = {"pyspark.daemon (default)": "pyspark.daemon", "jobs.spark_worker (preloading)": "jobs.spark_worker"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_spark_worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    procs = {name: subprocess.Popen([sys.executable, "-c", SIDE, daemon, str(args.rounds)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True) for name, daemon in SIDES.items()}
    times: dict[str, list[float]] = {name: [] for name in SIDES}
    for _ in range(args.rounds):
        for name, proc in procs.items():
            proc.stdin.write("\n")
            proc.stdin.flush()
            times[name].append(json.loads(proc.stdout.readline()))
    for proc in procs.values():
        proc.stdin.close()
        proc.wait(timeout=120)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:<32} median {medians[name]:6.2f} s per task with a fresh worker  ({', '.join(f'{v:.2f}' for v in values)})")
    default, preloading = medians.values()
    print(f"ratio preloading / default: {preloading / default:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
