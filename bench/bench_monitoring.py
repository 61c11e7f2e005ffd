"""Benchmark: the drift check of jobs/monitor.py at 1x and 100x a day's rows.

Prints, from one run on this machine (timings are noisy on a shared machine: the ratios,
measured side by side in the same run, interleaved, are what we report):
- the seconds of the part of `jobs.monitor.monitor_date` that grows with the day's rows,
  done as monitor does it: each side through `jobs.drift.stratified_sample`
  (`monitoring.max_rows_per_side`, stratified by `monitoring.stratify_by`, seeded), then
  `jobs.drift.data_drift` (Evidently's DataDriftPreset and the summary) on the columns
  `jobs.monitor.column_kinds` gives, then the prediction drift of the served probabilities
  (sampled the same way, `jobs.drift.prediction_drift`); the HTML + JSON rendering of the
  data drift snapshot (monitor's `_write_snapshot`, without the write) is timed apart and in
  the total. For the current side: one real day's features (~900 flights) and the same day
  at 100x (every row copied 100 times, each copy's double columns jittered by 1% of the
  column's standard deviation, so the copies are not duplicates);
- the goal of the issue: time(100x) / time(1x) <= 2 (on the check, and on the total);
- the same check at 100x WITHOUT sampling the current side (to show what sampling buys),
  skipped when it runs over `--cap` seconds (default 300);
- the peak memory of each check: each measurement runs in a forked child process and
  reports its peak RSS above the RSS it started with (ru_maxrss - start);
- that 1x and 100x reach the same verdict (drift share, drifted columns), and the verdict on a
  control day inside the reference's window (`--control-day`, default 2013-02-13).

The reference is what jobs/train.py stores with a model: `jobs.drift.reference_sample` of
the training rows (January-February 2013, `monitoring.reference_rows` = 20,000 of ~50,000,
stratified by flight date) with the probabilities of a model trained on them
(`jobs.model.train_torch`, one member, one epoch: its quality does not matter here),
written to Parquet and read back as monitor does. The day's features are the real
pre-departure features of `--day` (default 2013-03-15; tests/oracles/features_reference.py, the
pandas twin of the Spark job, as bench/bench_training.py builds and caches them), conformed
to the declared schema and read back as `Lake.read_partition` does (Arrow -> pandas); its
served probabilities are that model's.

    python -m bench.bench_monitoring [--quick] [--scale 100] [--repeats 3] [--cap 300] [--day 2013-03-15]

`--quick`: 1 repeat, no run without sampling.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

FIRST, TRAIN_LAST, LAST = dt.date(2013, 1, 1), dt.date(2013, 2, 28), dt.date(2013, 3, 31)
VALID_DAYS = 7
GOAL = 2.0
JITTER = 0.01  # of each double column's standard deviation
MIB = 2 ** 20


# Data -----------------------------------------------------------------------------------------
def lake_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Feature rows as `Lake.read_partition` returns a features partition: declared Arrow types -> pandas."""
    import pyarrow as pa

    from jobs.features import load_feature_schema

    types = {"int": pa.int32(), "bigint": pa.int64(), "double": pa.float64(), "string": pa.string(),
             "boolean": pa.bool_(), "date": pa.date32()}
    schema = pa.schema([pa.field(c.name, types[c.type]) for c in load_feature_schema().columns])
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False).to_pandas()


def scaled(day: pd.DataFrame, scale: int, seed: int = 7) -> pd.DataFrame:
    """`scale` copies of the day's rows; every copy but the first with its double columns jittered."""
    if scale == 1:
        return day
    rng = np.random.default_rng(seed)
    doubles = [c for c in day.columns if day[c].dtype == np.float64]
    parts = [day]
    for _ in range(1, scale):
        copy = day.copy()
        for column in doubles:
            values = copy[column].to_numpy()
            std = np.nanstd(values) if np.isfinite(values).any() else 0.0
            copy[column] = values + rng.normal(0.0, JITTER * (std or 1.0), len(values))
        parts.append(copy)
    return pd.concat(parts, ignore_index=True)


def reference_and_model(frame: pd.DataFrame, tmp: Path):
    """The drift reference jobs/train.py would store for a model of January-February, read back from Parquet."""
    from jobs.drift import reference_sample
    from jobs.model import FeatureSpec, TorchConfig, train_torch
    from jobs.settings import get_settings

    settings = get_settings()
    train = frame[frame["flight_date"] <= TRAIN_LAST].reset_index(drop=True)
    valid_first = TRAIN_LAST - dt.timedelta(days=VALID_DAYS - 1)
    fit, valid = train[train["flight_date"] < valid_first], train[train["flight_date"] >= valid_first]
    t = time.perf_counter()
    trained = train_torch(fit, fit["is_delayed"], valid, valid["is_delayed"],
                          features=FeatureSpec.from_schema(exclude=tuple(settings.training.exclude_features)),
                          config=TorchConfig(epochs=1, patience=1, ensemble_size=1))
    reference, info = reference_sample(train, trained, settings.monitoring.reference_rows,
                                       settings.monitoring.sample_seed)
    path = tmp / "reference_sample.parquet"
    reference.to_parquet(path, index=False)
    print(f"reference: {info['rows']:,} of {info['of_rows']:,} training rows ({FIRST}..{TRAIN_LAST}), model trained "
          f"in {time.perf_counter() - t:.0f} s", flush=True)
    return pd.read_parquet(path), trained


# The check --------------------------------------------------------------------------------------
def drift_check(reference: pd.DataFrame, current: pd.DataFrame, served: pd.DataFrame, *, sample: bool,
                render: bool) -> dict:
    """Monitor's steps 1 and 2 on in-memory frames; seconds of each part."""
    from jobs.drift import PROBABILITY, data_drift, prediction_drift, stratified_sample
    from jobs.monitor import column_kinds
    from jobs.settings import get_settings

    config = get_settings().monitoring
    by, seed, max_rows = config.stratify_by, config.sample_seed, config.max_rows_per_side
    limit = max_rows if sample else max(len(reference), len(current), len(served)) + 1
    times = {}
    t = time.perf_counter()
    numerical, categorical = column_kinds(reference)
    reference_side, reference_info = stratified_sample(reference, limit, by, seed)
    current_side, current_info = stratified_sample(current, limit, by, seed)
    times["sample"] = time.perf_counter() - t
    t = time.perf_counter()
    data = data_drift(reference_side, current_side, numerical, categorical, config.drift_share)
    data.summary.update(reference_sample=reference_info, current_sample=current_info)
    times["evidently"] = time.perf_counter() - t
    t = time.perf_counter()
    served_side, _ = stratified_sample(served, limit, by, seed)
    prediction = prediction_drift(reference_side[PROBABILITY], served_side[PROBABILITY])
    times["prediction"] = time.perf_counter() - t
    times["check"] = times["sample"] + times["evidently"] + times["prediction"]
    if render:
        t = time.perf_counter()
        html, js = data.snapshot.get_html_str(as_iframe=False), data.snapshot.json()
        times["render"] = time.perf_counter() - t
        times["report_mib"] = (len(html) + len(js)) / MIB
    times["total"] = times["check"] + times.get("render", 0.0)
    summary = data.summary
    return {"times": times, "drift_share": summary["drift_share"], "drifted": summary["drifted_columns"],
            "dataset_drift": summary["dataset_drift"], "current_rows": summary["current_rows"],
            "reference_rows": summary["reference_rows"], "prediction_score": prediction.summary["score"]}


def _child(conn, args, kwargs) -> None:
    try:
        import psutil

        start = psutil.Process().memory_info().rss
        before = resource.getrusage(resource.RUSAGE_SELF)
        result = drift_check(*args, **kwargs)
        after = resource.getrusage(resource.RUSAGE_SELF)
        result["peak_mib"] = max(after.ru_maxrss * 1024 - start, 0) / MIB
        result["cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        conn.send(("ok", result))
    except BaseException:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def in_child(cap_s: float, *args, **kwargs) -> dict | None:
    """drift_check in a forked child (its own peak memory); None when it runs over cap_s."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(child, args, kwargs))
    started = time.perf_counter()
    process.start()
    child.close()
    if not parent.poll(cap_s):
        process.kill()
        process.join()
        return None
    status, payload = parent.recv()
    process.join()
    if status != "ok":
        raise RuntimeError(f"drift check failed in the child process:\n{payload}")
    payload["wall_s"] = time.perf_counter() - started
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, no run without sampling")
    parser.add_argument("--scale", type=int, default=100, help="copies of the day (default 100)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved runs of each size (default 3)")
    parser.add_argument("--cap", type=float, default=300.0, help="seconds allowed to the run without sampling")
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2013, 3, 15), help="the current day")
    parser.add_argument("--control-day", type=dt.date.fromisoformat, default=dt.date(2013, 2, 13),
                        help="a day inside the reference's window: the verdict on data the reference covers")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "flight-delay-bench")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    if not TRAIN_LAST < args.day <= LAST:
        parser.error(f"--day must be after the training window and at most {LAST}")
    logging.getLogger("mlflow").setLevel(logging.ERROR)

    from bench.bench_training import labelled_features
    from jobs.settings import get_settings

    config = get_settings().monitoring
    frame = labelled_features(FIRST, LAST, args.cache)
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        reference, trained = reference_and_model(frame, Path(tmp))
    day = lake_frame(frame[frame["flight_date"] == args.day])
    big = scaled(day, args.scale)
    currents = {"1x": day, f"{args.scale}x": big}
    served = {name: current[["year", "month", "day", "carrier", "flight", "origin", "flight_date"]].assign(
        probability=trained.predict_proba(current)) for name, current in currents.items()}
    print(f"current: {args.day}, {len(day):,} flights; x{args.scale}: {len(big):,} rows; sampling: "
          f"max_rows_per_side {config.max_rows_per_side:,} stratified by {config.stratify_by}", flush=True)

    t = time.perf_counter()
    drift_check(reference, day, served["1x"], sample=True, render=True)  # imports and first-call caches, untimed
    print(f"warm-up check (Evidently imports) {time.perf_counter() - t:.1f} s", flush=True)
    control_day = lake_frame(frame[frame["flight_date"] == args.control_day])
    control = drift_check(reference, control_day, control_day.assign(probability=trained.predict_proba(control_day)),
                          sample=True, render=False)

    runs: dict[str, list[dict]] = {name: [] for name in currents}
    for _ in range(repeats):
        for name, current in currents.items():  # interleaved: 1x, 100x, 1x, 100x, ...
            result = in_child(3600, reference, current, served[name], sample=True, render=True)
            runs[name].append(result)
            print(f"  {name:>5}: check {result['times']['check']:6.2f} s, render {result['times']['render']:5.2f} s, "
                  f"CPU {result['cpu_s']:6.2f} s, peak +{result['peak_mib']:,.0f} MiB, load {os.getloadavg()[0]:.1f}",
                  flush=True)
    unsampled = None
    if not args.quick:
        name = f"{args.scale}x"
        print(f"  {name} without sampling (cap {args.cap:.0f} s) ...", flush=True)
        unsampled = in_child(args.cap, reference, big, served[name], sample=False, render=True)
        if unsampled is None:
            print(f"  {name} without sampling: over {args.cap:.0f} s, stopped", flush=True)

    def med(name: str, part: str) -> float:
        return statistics.median(r["times"][part] for r in runs[name])

    def cpu(name: str) -> float:
        return statistics.median(r["cpu_s"] for r in runs[name])

    small, large = "1x", f"{args.scale}x"
    print(f"\n== drift check of {args.day}: medians of {repeats} interleaved run(s), each in a fresh forked process ==")
    header = (f"{'current side':<28}{'rows':>9}{'sampled to':>11}{'sample s':>10}{'Evidently s':>12}"
              f"{'pred. s':>9}{'check s':>9}{'render s':>10}{'total s':>9}{'CPU s':>8}{'peak MiB':>10}  verdict")
    print(header)
    for name in (small, large):
        last = runs[name][-1]
        print(f"{name + ' (sampled)':<28}{len(currents[name]):>9,}{last['current_rows']:>11,}{med(name, 'sample'):>10.2f}"
              f"{med(name, 'evidently'):>12.2f}{med(name, 'prediction'):>9.2f}{med(name, 'check'):>9.2f}"
              f"{med(name, 'render'):>10.2f}{med(name, 'total'):>9.2f}{cpu(name):>8.2f}"
              f"{statistics.median(r['peak_mib'] for r in runs[name]):>10,.0f}  share {last['drift_share']:.2f}, "
              f"{len(last['drifted'])} drifted: {', '.join(last['drifted'][:6])}")
    if unsampled is not None:
        t_ = unsampled["times"]
        print(f"{large + ' NOT sampled':<28}{len(big):>9,}{unsampled['current_rows']:>11,}{t_['sample']:>10.2f}"
              f"{t_['evidently']:>12.2f}{t_['prediction']:>9.2f}{t_['check']:>9.2f}{t_['render']:>10.2f}{t_['total']:>9.2f}"
              f"{unsampled['cpu_s']:>8.2f}"
              f"{unsampled['peak_mib']:>10,.0f}  share {unsampled['drift_share']:.2f}, "
              f"{len(unsampled['drifted'])} drifted: {', '.join(unsampled['drifted'][:6])}")
    elif not args.quick:
        print(f"{large + ' NOT sampled':<28}{len(big):>9,}  over the {args.cap:.0f} s cap: stopped")
    check_ratio, total_ratio = med(large, "check") / med(small, "check"), med(large, "total") / med(small, "total")
    pairs = [b["times"]["total"] / a["times"]["total"] for a, b in zip(runs[small], runs[large])]
    print("columns: seconds are wall time of each part; CPU s = CPU seconds of the whole run (check + render) in "
          "its process; peak MiB = peak RSS above the process's RSS at its start")
    print(f"reference side: {runs[small][-1]['reference_rows']:,} rows; report (HTML + JSON) "
          f"{runs[large][-1]['times']['report_mib']:.1f} MiB at {large}")
    print(f"time({large}) / time({small}): check (sampling + Evidently + summary + prediction drift) "
          f"{check_ratio:.2f}, with rendering {total_ratio:.2f}")
    print(f"time({large}) / time({small}) per interleaved pair (total): {', '.join(f'{r:.2f}' for r in pairs)}; "
          f"CPU({large}) / CPU({small}): {cpu(large) / cpu(small):.2f} (CPU time is the steadier figure on a "
          f"shared machine)")
    if unsampled is not None:
        print(f"what sampling buys at {large}: {unsampled['times']['total'] / med(large, 'total'):.1f}x faster "
              f"({unsampled['cpu_s'] / cpu(large):.1f}x less CPU), "
              f"{unsampled['peak_mib'] / max(statistics.median(r['peak_mib'] for r in runs[large]), 1):.1f}x less "
              f"peak memory")
    print(f"control: {args.control_day}, a day INSIDE the reference's window ({len(control_day):,} flights): drift share "
          f"{control['drift_share']:.2f}, dataset drift {control['dataset_drift']}, {len(control['drifted'])} drifted: "
          f"{', '.join(control['drifted'])}")
    same = runs[small][-1]["drifted"] == runs[large][-1]["drifted"]
    differ = sorted(set(runs[small][-1]["drifted"]) ^ set(runs[large][-1]["drifted"]))
    print(f"same verdict at {small} and {large}: {'yes' if same else 'NO'} (drift share "
          f"{runs[small][-1]['drift_share']:.2f} vs {runs[large][-1]['drift_share']:.2f}"
          f"{'; differing columns: ' + ', '.join(differ) if differ else ''})")
    cpu_ratio = cpu(large) / cpu(small)
    print(f"GOAL time({large})/time({small}) <= {GOAL}: {check_ratio:.2f} -> {'MET' if check_ratio <= GOAL else 'NOT MET'}"
          f" (with rendering {total_ratio:.2f} -> {'MET' if total_ratio <= GOAL else 'NOT MET'}; in CPU time "
          f"{cpu_ratio:.2f} -> {'MET' if cpu_ratio <= GOAL else 'NOT MET'})")


if __name__ == "__main__":
    main()
