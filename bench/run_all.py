"""Run every benchmark in bench/ and print their figures (`make bench`)."""
from __future__ import annotations

from bench import (
    bench_cycle, bench_demo_window, bench_features, bench_ingest, bench_monitoring, bench_scoring, bench_spark_worker,
    bench_training, bench_training_threads,
)

if __name__ == "__main__":
    for module in (bench_ingest, bench_features, bench_training, bench_training_threads, bench_scoring,
                   bench_spark_worker, bench_monitoring, bench_demo_window, bench_cycle):
        print(f"== {module.__name__} ==")
        module.main()
