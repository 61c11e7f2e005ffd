"""Benchmark: how many threads a CPU training should take, on an idle machine and beside busy cores.

    python -m bench.bench_training_threads [--busy N] [--epochs 2] [--cache DIR]

A training on the local stack runs beside the day's other steps (ingestion, features, scoring
of the days ahead), and in a pod beside other pods on the node. torch and scikit-learn's
HistGradientBoosting default to a thread per core of the host, and their OpenMP threads
spin-wait for each other: when another process holds a core, a step of the fit waits for the
thread that lost it. `training.cpu_threads` (config/settings.yaml) fixes the number instead.

Trains, on the features of 2013-01-01..02-11 (bench_training's cached frame; its last 7 days
for early stopping), the torch model (one member, `--epochs` epochs) and the HGB baseline
(at most 100 iterations), once with 1 thread and once with a thread per core
(`os.cpu_count()`), first on the otherwise idle machine, then with `--busy` processes (default:
a core each) spinning beside it, a stand-in for the steps that run beside a training. Prints
wall and CPU seconds of each fit and, per condition, the ratio all-cores / 1 thread (> 1: one
thread is faster). Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from bench.bench_training import Split, labelled_features
from jobs.feeds import LABEL

SPLIT = Split(dt.date(2013, 1, 1), dt.date(2013, 2, 11), dt.date(2013, 2, 12), dt.date(2013, 2, 18), 7)


def _spin(stop: "multiprocessing.synchronize.Event") -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def fit(parts: dict, family: str, threads: int, epochs: int) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all its threads) of one fit."""
    from jobs.model.baseline import HgbConfig, train_hgb
    from jobs.model.network import TorchConfig
    from jobs.model.training import train_torch

    train, valid = parts["train"], parts["valid"]
    wall, cpu = time.perf_counter(), time.process_time()
    if family == "torch":
        train_torch(train, train[LABEL], valid, valid[LABEL], exclude=("month",),
                    config=TorchConfig(epochs=epochs, patience=epochs, ensemble_size=1, use_gpu=False,
                                       num_threads=threads))
    else:
        train_hgb(train, train[LABEL], valid, valid[LABEL], exclude=("month",),
                  config=HgbConfig(max_iter=100, num_threads=threads))
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--busy", type=int, default=os.cpu_count(), help="busy processes beside the fit (default: cores)")
    parser.add_argument("--epochs", type=int, default=2, help="torch epochs (one member)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "flight-delay-bench")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    frame = labelled_features(SPLIT.train_first, SPLIT.holdout_last, args.cache)
    parts = SPLIT.parts(frame)
    print(f"{len(parts['train']):,} training rows, {len(parts['valid']):,} validation rows; {cores} cores")
    fit(parts, "torch", 1, 1)  # warm-up: imports, first allocations
    ratios = []
    for condition in ("idle", f"{args.busy} busy"):
        stop = multiprocessing.Event()
        spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
                    for _ in range(args.busy if condition != "idle" else 0)]
        for spinner in spinners:
            spinner.start()
        try:
            for family in ("torch", "hgb"):
                one = fit(parts, family, 1, args.epochs)
                every = fit(parts, family, cores, args.epochs)
                print(f"{condition:>8} {family:>5}: 1 thread {one[0]:6.1f} s wall {one[1]:6.1f} s CPU; "
                      f"{cores} threads {every[0]:6.1f} s wall {every[1]:6.1f} s CPU; "
                      f"all cores / 1 thread: {every[0] / one[0]:.2f}x wall, {every[1] / one[1]:.2f}x CPU", flush=True)
                ratios.append((condition, family, every[0] / one[0]))
        finally:
            stop.set()
            for spinner in spinners:
                spinner.join()
    print("wall ratio, all cores / 1 thread: " + "; ".join(f"{c} {f} {r:.2f}x" for c, f, r in ratios))


if __name__ == "__main__":
    main()
