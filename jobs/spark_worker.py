"""The daemon of Spark's Python workers, with the scoring libraries imported before it forks (`spark.python.daemon.module`).

Spark forks each task's Python worker from one daemon per executor. pyspark's own daemon
has imported nothing but pyspark, so every scoring task's worker imported pandas, pyarrow,
MLflow and torch itself before `mlflow.pyfunc.spark_udf` could predict a row: a fixed cost
per task, paid for each day scored. This daemon imports them once, then runs pyspark's own
(`pyspark.daemon.manager`); the workers it forks start with them in memory, as jobs/warm/
does for the steps. A library the image lacks is skipped, so a Spark step without torch runs
as before. pyspark warns that pandas and pyarrow may start threads at import, which a fork
does not copy: none of these libraries holds a lock across the fork here (tested by
tests/unit/test_spark_worker.py, which runs UDFs through workers of this daemon).
"""
from __future__ import annotations

import importlib
import sys

# What jobs.score's UDF imports (the pyfunc's own code is loaded from the model, per task).
PRELOAD = ("pandas", "pyarrow", "mlflow.pyfunc", "torch", "sklearn.ensemble")


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import what can be imported; the names that could not (absent from this image)."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


if __name__ == "__main__":
    skipped = preload()
    if skipped:
        print(f"jobs.spark_worker: not preloaded (not installed): {', '.join(skipped)}", file=sys.stderr)
    from pyspark.daemon import manager

    manager()
