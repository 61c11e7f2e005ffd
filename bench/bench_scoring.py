"""Benchmark: batch scoring throughput, Spark's `mlflow.pyfunc.spark_udf` against the in-process pyfunc.

Prints, from one run on this machine (timings are noisy on a shared machine: the ratios,
measured side by side in the same run, interleaved, are what we report):
- throughput (rows/s) of scoring the SAME `--rows` feature rows (default 1,000,000) with the
  SAME registered model version (`models:/<name>/<version>` in a temporary sqlite-backed
  MLflow) two ways:
  (a) in process: `mlflow.pyfunc.load_model(uri).predict(frame)` on a pandas frame of the
      model's input columns (what the UDF receives: numbers as doubles, strings, booleans);
  (b) Spark as jobs/score.py does it: a local[2] session from `jobs.spark.spark_session`,
      `jobs.score.serving_udf` (spark_udf, env manager `local`), `jobs.score.score_frame`,
      timed end to end as a Spark job: `spark.createDataFrame(arrow table)` -> score ->
      `toArrow()` on the driver.
  and the goal of the issue: spark_udf throughput / in-process throughput >= 0.7;
- the one-time costs, apart: the JVM start, `load_model` (in process), `spark_udf` (model
  download + broadcast), the first Spark job (Python workers start, each loads the model),
  and Arrow -> pandas of the in-process frame;
- that both paths scored identical rows (the output's flight key equals the input's, row
  by row) and agree: max |p_spark - p_pyfunc|;
- diagnostics of the in-process figure, run first in their own pairs: the pyfunc with torch
  at 1 thread; called per 10,000-row slice (what each Spark worker does with its Arrow
  batches, without Spark); with jobs/model/network.py's predict chunk `_PREDICT_BATCH` set to 65,536,
  its value until this bench showed it 2-3x slower than 8,192 (monkeypatched: the pyfunc
  runs the pipeline's own jobs.model);
- CPU seconds of each path (this process, the JVM and the Python workers together): on a
  shared machine they move less than wall time, and they show what each path costs;
- variants of the Spark path, each with fresh Python workers, to explain the ratio:
  a constant pandas UDF (no model: Spark's own cost of moving the rows through Python);
  `one task per Arrow batch` (jobs/score.py before its coalesce); `repartition(2)` (the same
  tasks by a shuffle); `spark.sql.execution.arrow.maxRecordsPerBatch` 65,536 without the
  coalesce (Spark's default is 10,000). `--all-variants` adds repartition(4) and (8),
  2,048-row batches, 65,536-row batches with the coalesce, and 2 torch threads per worker
  (`spark_udf(extra_env={"OMP_NUM_THREADS": "2"})`); `--only "NAME;NAME"` runs the baseline
  and the named variants. The `tasks` column gives the partitions of the scored DataFrame.

What the variants showed (2 cores, Spark 4.3, MLflow 3.17): `spark.createDataFrame(arrow
table)` makes one partition per Arrow batch of maxRecordsPerBatch rows (1M rows: 100 tasks),
and in local mode `spark_udf` does not use its per-worker model cache
(`should_use_spark_to_broadcast_file` is false), so every task loads the model again (MLmodel,
requirements check, unpickling, torch.load): that, not torch threads, is what the Python
workers spent most of their time on. So jobs/score.py coalesces the features to
ceil(rows / `scoring.rows_per_task`) partitions (settings; 1M rows: 2 tasks). One run
(2026-12-04, 1M rows): in-process 9.5 s; Spark as jobs/score.py 13.8 s (ratio 0.67), with
100 tasks 23.9 s (0.37), repartition(2) 14.6 s (0.70), 65,536-row batches without the
coalesce (16 tasks) 14.3 s (0.73); a constant UDF 5.0 s (Spark's own cost); against
in-process torch at 1 thread (what each worker gets) 1.05. A second run: as jobs/score.py
0.77, repartition(2) 0.66, 65,536-row batches with the coalesce 0.74. The diagnostics also
showed the model's predict chunk of 65,536 rows 2.2x slower than 8,192 (now the chunk).
PySpark already runs each Python worker with OMP_NUM_THREADS = the task's cores (1 here)
unless `spark.executorEnv.OMP_NUM_THREADS` is set, so 2 workers do not oversubscribe 2 cores
(the `thr` column shows torch's threads in the workers); 2 threads per worker made it about
2x slower.

The rows: real pre-departure features of January-March 2013 (tests/oracles/features_reference.py,
the parity-tested pandas twin of the Spark job, as bench/bench_training.py builds and caches
them), conformed to the declared feature schema (config/features.yaml: the Arrow types of a
features partition) and repeated until `--rows`. The model: `jobs.model.train_torch` (the
torch_mlp family, the served architecture: 3 members; `--epochs`, default 1, since training
quality is not measured here) on January-February, logged with `jobs.model.log_model` and
registered; `--hgb` also measures the HistGradientBoosting family.

    python -m bench.bench_scoring [--quick] [--rows 1000000] [--repeats 3] [--variant-repeats 2] [--hgb]
                                  [--no-variants | --all-variants | --only NAMES] [--driver-memory 4g]

The session gets a 4g driver (`--driver-memory`): jobs/score.py's 1g (settings) holds one
1M-row job, but the bench's 10+ jobs of 1M rows in one session ran out of heap in
`readArrowStreamFromFile` (createDataFrame) on the fourth.

`--quick`: 200,000 rows, 2 repeats, only the constant-UDF variant (1 run).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.7
FIRST, TRAIN_LAST, LAST = dt.date(2013, 1, 1), dt.date(2013, 2, 28), dt.date(2013, 3, 31)
VALID_DAYS = 7
MODEL_NAME = "flight_delay_bench"
ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


# Data and model -----------------------------------------------------------------------------
def feature_table(frame: pd.DataFrame, rows: int):
    """The feature rows of `frame` as a features partition's Arrow table, repeated to `rows` rows."""
    import pyarrow as pa

    from jobs.features import load_feature_schema

    types = {"int": pa.int32(), "bigint": pa.int64(), "double": pa.float64(), "string": pa.string(),
             "boolean": pa.bool_(), "date": pa.date32()}
    schema = pa.schema([pa.field(c.name, types[c.type]) for c in load_feature_schema().columns])
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    return table.take(pa.array(np.arange(rows) % table.num_rows)).combine_chunks()


def train_models(frame: pd.DataFrame, epochs: int, hgb: bool) -> dict[str, object]:
    from jobs.model import FeatureSpec, HgbConfig, TorchConfig, train_hgb, train_torch
    from jobs.settings import get_settings

    valid_first = TRAIN_LAST - dt.timedelta(days=VALID_DAYS - 1)
    window = frame[frame["flight_date"] <= TRAIN_LAST]
    fit, valid = window[window["flight_date"] < valid_first], window[window["flight_date"] >= valid_first]
    features = FeatureSpec.from_schema(exclude=tuple(get_settings().training.exclude_features))
    models = {}
    t = time.perf_counter()
    models["torch"] = train_torch(fit, fit["is_delayed"], valid, valid["is_delayed"], features=features,
                                  config=TorchConfig(epochs=epochs, patience=epochs))
    print(f"trained torch ({models['torch'].config['ensemble_size']} members, {epochs} epoch(s)) on {len(fit):,} rows "
          f"in {time.perf_counter() - t:.0f} s, valid AUC {models['torch'].valid_auc:.4f}", flush=True)
    if hgb:
        t = time.perf_counter()
        models["hgb"] = train_hgb(fit, fit["is_delayed"], valid, valid["is_delayed"], features=features,
                                  config=HgbConfig(max_iter=300))
        print(f"trained HGB ({models['hgb'].best_epoch} iterations) in {time.perf_counter() - t:.0f} s, "
              f"valid AUC {models['hgb'].valid_auc:.4f}", flush=True)
    return {"models": models, "example": fit.head(20)}


def register(trained, example: pd.DataFrame, tracking_uri: str, name: str):
    """Log and register `trained` in the temporary MLflow; the ServingModel jobs/score.py would resolve."""
    import mlflow

    from jobs.model import log_model
    from jobs.serving import ServingModel
    from jobs.settings import get_settings

    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_name=f"bench-scoring-{name}") as run:
        info = log_model(trained, "model", example, registered_model_name=name)
    return ServingModel(name, str(info.registered_model_version), run.info.run_id,
                        get_settings().training.decision_threshold)


# The two paths ------------------------------------------------------------------------------
def pyfunc_frame(table, inputs: list[tuple[str, str]]) -> pd.DataFrame:
    """The model's input columns as the UDF receives them (score_frame casts the numbers to double)."""
    import pyarrow as pa

    numeric = ("double", "float", "long", "integer")
    columns = [table[name].cast(pa.float64()) if kind in numeric else table[name] for name, kind in inputs]
    return pa.table(columns, names=[name for name, _ in inputs]).to_pandas()


@dataclass
class Variant:
    name: str
    conf: dict[str, str] = field(default_factory=dict)       # runtime SQL conf
    worker_env: dict[str, str] = field(default_factory=dict)  # = spark.executorEnv.* (the Python workers' env)
    extra_env: dict[str, str] | None = None                   # spark_udf(extra_env=...)
    partitions: int | None = None                             # instead of jobs/score.py's: repartition(n)
    coalesce: int | None = None                               # instead: coalesce(n)
    raw: bool = False                                         # instead: createDataFrame's own partitions
    constant: bool = False                                    # a pandas UDF that returns 0.5: Spark's plumbing alone
    note: str = ""


@contextlib.contextmanager
def applied(spark, variant: Variant):
    """The variant's conf and worker environment; a distinct environment means fresh Python workers."""
    sc = spark.sparkContext
    saved_env = dict(sc.environment)
    saved_conf = {k: spark.conf.get(k, None) for k in variant.conf}
    sc.environment.update(variant.worker_env)
    sc.environment["BENCH_VARIANT"] = variant.name  # a new Python worker daemon (and workers) per variant
    for key, value in variant.conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        sc.environment.clear()
        sc.environment.update(saved_env)
        for key, value in saved_conf.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)


def make_udf(spark, model, variant: Variant):
    """jobs.score.serving_udf; or the same spark_udf call with `extra_env` (the proposed change); or a constant."""
    import mlflow

    from jobs.score import serving_udf

    if variant.constant:
        from pyspark.sql.functions import pandas_udf

        @pandas_udf("double")
        def constant(batches: Iterator[pd.DataFrame]) -> Iterator[pd.Series]:
            for batch in batches:
                yield pd.Series(np.full(len(batch), 0.5))
        return constant
    if variant.extra_env is None:
        return serving_udf(spark, model)
    return mlflow.pyfunc.spark_udf(spark, model.uri, result_type="double", env_manager="local",
                                   extra_env=variant.extra_env)


def features_frame(spark, table, variant: Variant):
    """The features DataFrame as jobs/score.py makes it (jobs.score.scoring_frame: createDataFrame of the
    Arrow table coalesced to scoring_tasks(rows, rows_per_task of the settings)), or the variant's."""
    from jobs.score import scoring_frame
    from jobs.settings import get_settings

    if variant.partitions:
        return spark.createDataFrame(table).repartition(variant.partitions)
    if variant.coalesce:
        return spark.createDataFrame(table).coalesce(variant.coalesce)
    if variant.raw:
        return spark.createDataFrame(table)
    return scoring_frame(spark, table, get_settings().scoring.rows_per_task)


def spark_score(spark, table, udf, inputs, key, model, variant: Variant):
    """One end-to-end Spark job as jobs/score.py runs it: Arrow in, predictions collected as Arrow (not
    sorted by key as jobs/score.py then writes them: the input order is what check_same compares)."""
    from jobs.score import score_frame

    scored_at = dt.datetime(2013, 3, 1)
    return score_frame(features_frame(spark, table, variant), udf, inputs, key, model, scored_at).toArrow()


def worker_threads(spark) -> list[int]:
    """torch.get_num_threads() in the Python workers of the current environment (after they scored)."""
    def probe(batches):
        import torch

        for batch in batches:
            yield pd.DataFrame({"threads": [torch.get_num_threads()] * len(batch)})

    rows = spark.range(0, 2, numPartitions=2).mapInPandas(probe, "threads int").collect()
    return sorted({r.threads for r in rows})


@dataclass
class Measured:
    name: str
    seconds: list[float]
    rows: int
    note: str = ""
    paired: list[float] = field(default_factory=list)  # the in-process runs interleaved with these
    threads: list[int] = field(default_factory=list)
    warmup_s: float = 0.0
    udf_s: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after
    tasks: int = 0  # partitions of the scored DataFrame: Spark tasks, and UDF calls (each loads the model locally)
    cpu: list[dict[str, float]] = field(default_factory=list)  # CPU seconds per run: driver, jvm, workers

    def cpu_median(self, kind: str | None = None) -> float:
        return statistics.median(sum(c.values()) if kind is None else c[kind] for c in self.cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def throughput(self) -> float:
        return self.rows / self.median

    @property
    def ratio(self) -> float:
        """Throughput relative to the in-process pyfunc runs interleaved with these runs."""
        return statistics.median(self.paired) / self.median if self.paired else float("nan")


def check_same(table, out, expected: np.ndarray, key: list[str]) -> tuple[float, bool]:
    """max |p_spark - p_pyfunc| over the same rows, and whether Spark kept the input order.

    In order (no shuffle): the output's key columns must equal the input's row by row. After
    a shuffle: both sides sorted by (key, flight date, probability); copies of a flight have
    the same features, hence the same probability, so the sorted sides must match too.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if out.num_rows != table.num_rows:
        raise AssertionError(f"Spark returned {out.num_rows:,} rows for {table.num_rows:,}")
    columns = [*key, "flight_date"]

    def equal(a, b) -> bool:
        return all(pc.all(pc.equal(a[c], b[c]).fill_null(True)).as_py()
                   and pc.all(pc.equal(pc.is_null(a[c]), pc.is_null(b[c]))).as_py() for c in columns)

    mine = table.select(columns).append_column("probability", pa.array(expected))
    in_order = equal(out, mine)
    if not in_order:
        order = [(c, "ascending") for c in [*columns, "probability"]]
        out, mine = out.sort_by(order), mine.sort_by(order)
        if not equal(out, mine):
            raise AssertionError("Spark's output rows are not the input rows")
    got = out["probability"].to_numpy(zero_copy_only=False)
    return float(np.max(np.abs(got - mine["probability"].to_numpy()))), in_order


def cpu_times() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of this process and each descendant, by pid, with its kind (driver, jvm, workers).

    A process's figure includes its ended, reaped children (a worker that ends is counted in
    its parent's); `cpu_since` takes the difference of two snapshots.
    """
    import psutil

    out = {}
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            t = process.cpu_times()
            kind = "driver" if process.pid == me.pid else "jvm" if "java" in process.name() else "workers"
            out[process.pid] = (kind, t.user + t.system + t.children_user + t.children_system)
        except psutil.Error:
            pass
    return out


def cpu_since(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds by kind used since `before` by the processes alive now (new ones counted from their start)."""
    used = {"driver": 0.0, "jvm": 0.0, "workers": 0.0}
    for pid, (kind, total) in cpu_times().items():
        used[kind] += max(total - before.get(pid, (kind, 0.0))[1], 0.0)
    return used


def measure_family(spark, family: str, model, table, repeats: int, variant_repeats: int,
                   variants: list[Variant], batch_rows: int = 10_000) -> dict:
    import mlflow
    import torch

    from jobs.features import load_feature_schema
    from jobs.score import model_inputs

    rows = table.num_rows
    key = list(load_feature_schema().key)
    inputs = model_inputs(model.uri)
    t = time.perf_counter()
    frame = pyfunc_frame(table, inputs)
    to_pandas_s = time.perf_counter() - t
    t = time.perf_counter()
    loaded = mlflow.pyfunc.load_model(model.uri)
    load_s = time.perf_counter() - t
    print(f"\n[{family}] model {model.uri}; {len(inputs)} inputs; {rows:,} rows "
          f"({table.nbytes / 2**20:,.0f} MiB of Arrow); in-process torch threads {torch.get_num_threads()}", flush=True)
    loaded.predict(frame.head(2000))  # first call (lazy imports), untimed

    import jobs.model.network

    default_chunk = jobs.model.network._PREDICT_BATCH

    def whole(data: pd.DataFrame) -> np.ndarray:
        return np.asarray(loaded.predict(data), dtype=np.float64).reshape(-1)

    def per_batch(data: pd.DataFrame) -> np.ndarray:
        return np.concatenate([whole(data.iloc[i:i + batch_rows]) for i in range(0, len(data), batch_rows)])

    @contextlib.contextmanager
    def torch_threads(n: int):
        previous = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    @contextlib.contextmanager
    def predict_chunk(n: int):
        jobs.model.network._PREDICT_BATCH = n  # the pyfunc runs this very module (the pipeline's jobs package wins)
        try:
            yield
        finally:
            jobs.model._PREDICT_BATCH = default_chunk

    pyfunc = Measured("in-process pyfunc predict", [], rows, f"torch {torch.get_num_threads()} threads")
    # Diagnostics, run in the baseline's pairs: what the in-process figure is made of.
    diagnostics = [
        (Measured("in-process, torch 1 thread", [], rows, "torch.set_num_threads(1)"),
         lambda: torch_threads(1), whole),
        (Measured(f"in-process, predict per {batch_rows:,}-row slice", [], rows,
                  "one process: the batches a Spark worker gets"), contextlib.nullcontext, per_batch),
        (Measured("in-process, _PREDICT_BATCH 65,536", [], rows, f"jobs/model/network.py chunk, now {default_chunk:,}"),
         lambda: predict_chunk(65_536), whole),
    ]
    expected: np.ndarray | None = None

    def timed(measured: Measured, run, label: str) -> np.ndarray:
        c0, t0 = cpu_times(), time.perf_counter()
        predicted = run()
        measured.seconds.append(time.perf_counter() - t0)
        measured.cpu.append(cpu_since(c0))
        print(f"  {label}: {measured.seconds[-1]:7.2f} s", flush=True)
        return predicted

    def run_pyfunc() -> float:
        nonlocal expected
        expected = timed(pyfunc, lambda: whole(frame), "pyfunc predict")
        return pyfunc.seconds[-1]

    def run_diagnostics() -> None:
        for measured, context, how in diagnostics:
            with context():
                got = timed(measured, lambda: how(frame), measured.name)
            measured.paired.append(pyfunc.seconds[-1])
            if not np.allclose(got, expected, atol=1e-6):
                raise AssertionError(f"{measured.name}: probabilities differ from the pyfunc's")

    # The diagnostics first, in pairs with the pyfunc, apart from Spark: when they were
    # interleaved with the first variant's runs, its Python workers spent ~1.5x the CPU
    # seconds of the same layout measured later, whichever layout came first.
    for _ in range(repeats):
        run_pyfunc()
        run_diagnostics()

    # The JVM compiles its Arrow and Python-runner paths as it runs: one untimed full-size job
    # first, so that the first variant measured is not also the JVM's warm-up.
    jit = Variant("JVM warm-up", constant=True)
    with applied(spark, jit):
        t = time.perf_counter()
        spark_score(spark, table, make_udf(spark, model, jit), inputs, key, model, jit)
        print(f"  untimed JVM warm-up (a full-size job, constant UDF): {time.perf_counter() - t:.1f} s", flush=True)
    warm = table.slice(0, 20_000)
    results: dict[str, Measured] = {}
    for variant in variants:
        baseline = variant is variants[0]
        with applied(spark, variant):
            load_before = os.getloadavg()[0]
            t = time.perf_counter()
            udf = make_udf(spark, model, variant)
            udf_s = time.perf_counter() - t
            t = time.perf_counter()
            spark_score(spark, warm, udf, inputs, key, model, variant)  # workers start, load the model
            measured = Measured(variant.name, [], rows, variant.note, warmup_s=time.perf_counter() - t, udf_s=udf_s,
                                tasks=features_frame(spark, table, variant).rdd.getNumPartitions())
            for _ in range(repeats if baseline else variant_repeats):
                # Interleaved with in-process runs, so that both see the same machine load.
                measured.paired.append(run_pyfunc())
                out = None
                gc.collect()  # drop the previous job's DataFrames (py4j proxies) so the JVM can free their rows
                out = timed(measured, lambda: spark_score(spark, table, udf, inputs, key, model, variant),
                            f"spark [{variant.name}]")
            measured.load = (load_before, os.getloadavg()[0])
            if not variant.constant:
                measured.threads = worker_threads(spark)
                diff, in_order = check_same(table, out, expected, key)
                measured.note = (measured.note + f"; max|dp| {diff:.1e}"
                                 + ("" if in_order else " (rows shuffled: compared sorted by key)")).lstrip("; ")
            results[variant.name] = measured
    return {"pyfunc": pyfunc, "diagnostics": [m for m, _, _ in diagnostics], "spark": results, "load_s": load_s, "to_pandas_s": to_pandas_s,
            "inputs": len(inputs), "delay_rate": float(np.mean(expected >= model.threshold))}


def print_family(family: str, result: dict, jvm_s: float) -> None:
    pyfunc: Measured = result["pyfunc"]
    spark = result["spark"]
    baseline = next(iter(spark.values()))
    print(f"\n== {family}: {pyfunc.rows:,} rows; medians; ratio = throughput / that of the in-process pyfunc runs "
          f"interleaved with it (their median: 'pyfunc s') ==")
    print(f"{'path':<46}{'seconds':>8}{'rows/s':>10}{'ratio':>7}{'pyfunc s':>9}{'CPU s':>7}{'drv/jvm/wrk':>15}"
          f"{'CPU/pyf':>8}{'tasks':>6}  {'thr':<4}{'1st job':>8}{'load':>10}  runs; note")

    def row(m: Measured, name: str, ratio: float, paired: float) -> None:
        parts = "/".join(f"{m.cpu_median(kind):.0f}" for kind in ("driver", "jvm", "workers"))
        load = f"{m.load[0]:.1f}-{m.load[1]:.1f}" if m.load != (0.0, 0.0) else ""
        print(f"{name:<46}{m.median:>8.2f}{m.throughput:>10,.0f}{ratio:>7.2f}{paired:>9.2f}{m.cpu_median():>7.1f}"
              f"{parts:>15}{m.cpu_median() / pyfunc.cpu_median():>8.2f}{m.tasks or '-':>6}  "
              f"{','.join(map(str, m.threads)) or '-':<4}"
              f"{(f'{m.warmup_s:.1f}' if m.warmup_s else '-'):>8}{load:>10}  "
              f"{', '.join(f'{s:.1f}' for s in m.seconds)}{'; ' + m.note if m.note else ''}")

    row(pyfunc, pyfunc.name, 1.0, pyfunc.median)
    for m in result["diagnostics"]:
        row(m, m.name, m.ratio, statistics.median(m.paired))
    for m in spark.values():
        row(m, "spark: " + m.name, m.ratio, statistics.median(m.paired))
    scored = [m for m in spark.values() if "max|dp|" in m.note]
    best = max(scored, key=lambda m: m.ratio)
    print("columns: CPU s = CPU seconds of every process involved, split driver (this process) / jvm / wrk (the "
          "Python workers); CPU/pyf = CPU s / the in-process pyfunc's; tasks = partitions of the scored DataFrame "
          "(Spark tasks; in local mode spark_udf loads the model once per task); thr = torch threads in the Python workers; "
          "1st job = the untimed first Spark job on 20,000 rows (workers start, load the model); load = 1-minute "
          "load average before-after")
    print(f"one-time, not in the figures: JVM start {jvm_s:.1f} s; in-process load_model {result['load_s']:.1f} s; "
          f"spark_udf (model download + broadcast) {baseline.udf_s:.1f} s; first Spark job {baseline.warmup_s:.1f} s; "
          f"Arrow -> pandas of the in-process frame {result['to_pandas_s']:.1f} s")
    print(f"same rows: the Spark output's flight keys equal the input's row by row, probabilities agree "
          f"(max|dp| above); predicted delayed {result['delay_rate']:.3f}")
    print(f"GOAL spark_udf / in-process throughput >= {GOAL}: as jobs/score.py runs it {baseline.ratio:.2f} -> "
          f"{'MET' if baseline.ratio >= GOAL else 'NOT MET'}; best variant '{best.name}' {best.ratio:.2f} -> "
          f"{'MET' if best.ratio >= GOAL else 'NOT MET'}")
    for m in result["diagnostics"]:
        print(f"against '{m.name}' (median {m.median:.1f} s) instead: as jobs/score.py "
              f"{m.median / baseline.median:.2f}, '{best.name}' {m.median / best.median:.2f}")


def variants_for(args) -> list[Variant]:
    variants = [Variant("as jobs/score.py", note="coalesced to ceil(rows / scoring.rows_per_task) tasks")]
    if args.no_variants:
        return variants
    variants.append(Variant("constant pandas UDF (no model)", constant=True, note="Spark's plumbing alone"))
    if args.quick:
        return variants
    variants += [
        Variant("one task per Arrow batch", raw=True,
                note="no coalesce: the model loads once per 10,000 rows"),
        Variant("repartition(2)", partitions=2, note="a shuffle, 2 tasks"),
        Variant("maxRecordsPerBatch 65,536, no coalesce", conf={ARROW_BATCH_CONF: "65536"}, raw=True,
                note="fewer, larger Arrow batches, hence fewer partitions"),
    ]
    if args.all_variants or args.only:
        variants += [
            Variant("repartition(4)", partitions=4, note="a shuffle, 4 tasks"),
            Variant("repartition(8)", partitions=8, note="a shuffle, 8 tasks"),
            Variant("torch 2 threads per worker (extra_env)", extra_env={"OMP_NUM_THREADS": "2"},
                    note="2 workers x 2 threads on 2 cores"),
            Variant("maxRecordsPerBatch 2,048, no coalesce", conf={ARROW_BATCH_CONF: "2048"}, raw=True),
            Variant("maxRecordsPerBatch 65,536", conf={ARROW_BATCH_CONF: "65536"},
                    note="as jobs/score.py, with larger Arrow batches to the workers"),
        ]
    if args.only:
        wanted = [w.strip() for w in args.only.split(";") if w.strip()]
        variants = [variants[0], *(v for v in variants[1:] if v.name in wanted)]
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 rows, 2 repeats, the constant-UDF variant only")
    parser.add_argument("--rows", type=int, default=None, help="feature rows scored (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs of the baseline pair (default 3)")
    parser.add_argument("--variant-repeats", type=int, default=None, help="timed runs of each variant pair (default 2)")
    parser.add_argument("--epochs", type=int, default=1, help="torch training epochs (quality is not measured)")
    parser.add_argument("--hgb", action="store_true", help="also measure the HistGradientBoosting family")
    parser.add_argument("--no-variants", action="store_true", help="only the path as jobs/score.py runs it")
    parser.add_argument("--all-variants", action="store_true", help="also smaller batches and more partitions")
    parser.add_argument("--only", default="", help="the baseline and these variants (names, separated by ';')")
    parser.add_argument("--driver-memory", default="4g",
                        help="Spark driver memory (default 4g; the settings' 1g holds one 1M-row job, not several)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "flight-delay-bench")
    args = parser.parse_args()
    rows = args.rows or (200_000 if args.quick else 1_000_000)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    repeats = args.repeats or (2 if args.quick else 3)
    variant_repeats = args.variant_repeats or (1 if args.quick else 2)

    from bench.bench_training import labelled_features
    from jobs.settings import get_settings
    from jobs.spark import spark_session

    frame = labelled_features(FIRST, LAST, args.cache)
    print(f"{len(frame):,} real feature rows of {FIRST}..{LAST}", flush=True)
    trained = train_models(frame, args.epochs, args.hgb)
    table = feature_table(frame, rows)

    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        tracking_uri = f"sqlite:///{tmp}/mlflow.db"
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        experiment = mlflow.create_experiment("bench_scoring", artifact_location=Path(tmp, "artifacts").as_uri())
        mlflow.set_experiment(experiment_id=experiment)
        served = {family: register(model, trained["example"], tracking_uri, f"{MODEL_NAME}_{family}")
                  for family, model in trained["models"].items()}

        spark_settings = get_settings().spark
        if args.driver_memory:
            spark_settings = spark_settings.model_copy(update={"driver_memory": args.driver_memory})
        t = time.perf_counter()
        spark = spark_session("bench-scoring", spark_settings)
        jvm_s = time.perf_counter() - t
        print(f"Spark {spark.version} {spark.sparkContext.master}, driver memory {spark_settings.driver_memory}, "
              f"session in {jvm_s:.1f} s", flush=True)
        results = {family: measure_family(spark, family, model, table, repeats, variant_repeats,
                                                 variants_for(args))
                   for family, model in served.items()}
        spark.stop()
    for family, result in results.items():
        print_family(family, result, jvm_s)


if __name__ == "__main__":
    main()
