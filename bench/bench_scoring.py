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
- variants of the Spark path, each with fresh Python workers (why a ratio is what it is):
  torch threads per Python worker (`OMP_NUM_THREADS=1` as an executor environment variable,
  or through spark_udf's own `extra_env`, which is the one-line change to jobs/score.py),
  Arrow batch size (`spark.sql.execution.arrow.maxRecordsPerBatch`) and partition count.

The rows: real pre-departure features of January-March 2013 (jobs/features_reference.py,
the parity-tested pandas twin of the Spark job, as bench/bench_training.py builds and caches
them), conformed to the declared feature schema (config/features.yaml: the Arrow types of a
features partition) and repeated until `--rows`. The model: `jobs.model.train_torch` (the
torch_mlp family, the served architecture: 3 members; `--epochs`, default 1, since training
quality is not measured here) on January-February, logged with `jobs.model.log_model` and
registered; `--hgb` also measures the HistGradientBoosting family.

    python -m bench.bench_scoring [--quick] [--rows 1000000] [--repeats 3] [--hgb] [--no-variants]

`--quick`: 200,000 rows, 2 repeats, only the thread variant.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

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
    from jobs.score import ServingModel
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
    partitions: int | None = None                             # createDataFrame(...).repartition(n)
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
    """jobs.score.serving_udf, or the same call with `extra_env` (the proposed change)."""
    import mlflow

    from jobs.score import serving_udf

    if variant.extra_env is None:
        return serving_udf(spark, model)
    return mlflow.pyfunc.spark_udf(spark, model.uri, result_type="double", env_manager="local",
                                   extra_env=variant.extra_env)


def spark_score(spark, table, udf, inputs, key, model, partitions: int | None):
    """One end-to-end Spark job as jobs/score.py runs it: Arrow in, predictions collected as Arrow."""
    from jobs.score import score_frame

    features = spark.createDataFrame(table)
    if partitions:
        features = features.repartition(partitions)
    scored_at = dt.datetime(2013, 3, 1)
    return score_frame(features, udf, inputs, key, model, scored_at).toArrow()


def worker_threads(spark) -> list[int]:
    """torch.get_num_threads() in the Python workers of the current environment (after they scored)."""
    def probe(batches):
        import torch

        for batch in batches:
            yield pd.DataFrame({"threads": [torch.get_num_threads()] * len(batch), "pid": [os.getpid()] * len(batch)})

    rows = spark.range(0, 2, numPartitions=2).mapInPandas(probe, "threads int, pid int").collect()
    return sorted({r.threads for r in rows})


@dataclass
class Measured:
    name: str
    seconds: list[float]
    rows: int
    note: str = ""
    threads: list[int] = field(default_factory=list)
    warmup_s: float = 0.0
    udf_s: float = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def throughput(self) -> float:
        return self.rows / self.median


def check_same(table, out, expected: np.ndarray, key: list[str]) -> float:
    """The output's rows are the input's, in order; max |p_spark - p_pyfunc|."""
    import pyarrow.compute as pc

    if out.num_rows != table.num_rows:
        raise AssertionError(f"Spark returned {out.num_rows:,} rows for {table.num_rows:,}")
    for column in [*key, "flight_date"]:
        same = pc.all(pc.equal(out[column], table[column]).fill_null(True)).as_py()
        nulls_same = pc.all(pc.equal(pc.is_null(out[column]), pc.is_null(table[column]))).as_py()
        if not (same and nulls_same):
            raise AssertionError(f"Spark's output rows are not the input rows in order (column {column})")
    got = out["probability"].to_numpy(zero_copy_only=False)
    return float(np.max(np.abs(got - expected)))


def measure_family(spark, family: str, model, table, repeats: int, variants: list[Variant]) -> dict:
    import mlflow

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
    import torch

    print(f"\n[{family}] model {model.uri}; {len(inputs)} inputs; {rows:,} rows "
          f"({table.nbytes / 2**20:,.0f} MiB of Arrow); in-process torch threads {torch.get_num_threads()}", flush=True)
    loaded.predict(frame.head(2000))  # first call (lazy imports), untimed

    warm = table.slice(0, 20_000)
    results: dict[str, Measured] = {}
    pyfunc = Measured("in-process pyfunc predict", [], rows)
    expected = None
    baseline_out = None

    def run_pyfunc() -> None:
        nonlocal expected
        t0 = time.perf_counter()
        predicted = loaded.predict(frame)
        pyfunc.seconds.append(time.perf_counter() - t0)
        expected = np.asarray(predicted, dtype=np.float64).reshape(-1)
        print(f"  pyfunc predict: {pyfunc.seconds[-1]:6.2f} s", flush=True)

    for variant in variants:
        with applied(spark, variant):
            t = time.perf_counter()
            udf = make_udf(spark, model, variant)
            udf_s = time.perf_counter() - t
            t = time.perf_counter()
            spark_score(spark, warm, udf, inputs, key, model, variant.partitions)  # workers start, load the model
            warmup_s = time.perf_counter() - t
            measured = Measured(variant.name, [], rows, variant.note, warmup_s=warmup_s, udf_s=udf_s)
            for _ in range(repeats):
                if variant is variants[0]:
                    run_pyfunc()  # interleaved with the baseline, so both see the same machine load
                t0 = time.perf_counter()
                out = spark_score(spark, table, udf, inputs, key, model, variant.partitions)
                measured.seconds.append(time.perf_counter() - t0)
                print(f"  spark [{variant.name}]: {measured.seconds[-1]:6.2f} s", flush=True)
            measured.threads = worker_threads(spark)
            if variant is variants[0]:
                baseline_out = out
            diff = check_same(table, out, expected, key)
            measured.note = (measured.note + f"; max|dp| {diff:.1e}").lstrip("; ")
            results[variant.name] = measured
    return {"pyfunc": pyfunc, "spark": results, "load_s": load_s, "to_pandas_s": to_pandas_s,
            "max_diff": check_same(table, baseline_out, expected, key), "inputs": len(inputs),
            "delay_rate": float(np.mean(expected >= model.threshold))}


def print_family(family: str, result: dict, jvm_s: float) -> None:
    pyfunc: Measured = result["pyfunc"]
    print(f"\n== {family}: {pyfunc.rows:,} rows, median of {len(pyfunc.seconds)} ==")
    print(f"{'path':<44}{'seconds':>9}{'rows/s':>12}{'vs pyfunc':>11}  {'worker threads':<15}{'1st job s':>10}  note")
    print(f"{pyfunc.name:<44}{pyfunc.median:>9.2f}{pyfunc.throughput:>12,.0f}{1.0:>11.2f}  {'-':<15}{'-':>10}  "
          f"runs {', '.join(f'{s:.2f}' for s in pyfunc.seconds)}")
    for m in result["spark"].values():
        ratio = m.throughput / pyfunc.throughput
        print(f"{'spark_udf: ' + m.name:<44}{m.median:>9.2f}{m.throughput:>12,.0f}{ratio:>11.2f}  "
              f"{','.join(map(str, m.threads)):<15}{m.warmup_s:>10.1f}  runs {', '.join(f'{s:.2f}' for s in m.seconds)}"
              f"{'; ' + m.note if m.note else ''}")
    baseline = next(iter(result["spark"].values()))
    ratio = baseline.throughput / pyfunc.throughput
    best = max(result["spark"].values(), key=lambda m: m.throughput)
    print(f"one-time: JVM start {jvm_s:.1f} s; in-process load_model {result['load_s']:.1f} s; spark_udf (download + "
          f"broadcast) {baseline.udf_s:.1f} s; first Spark job on 20,000 rows (worker start + model load) "
          f"{baseline.warmup_s:.1f} s; Arrow -> pandas for the in-process frame {result['to_pandas_s']:.1f} s")
    print(f"same rows, in order: yes; max |p_spark - p_pyfunc| = {result['max_diff']:.2e}; "
          f"predicted delayed {result['delay_rate']:.3f}")
    print(f"GOAL spark_udf/in-process throughput >= {GOAL}: as jobs/score.py runs it {ratio:.2f} -> "
          f"{'MET' if ratio >= GOAL else 'NOT MET'}; best variant '{best.name}' "
          f"{best.throughput / pyfunc.throughput:.2f} -> {'MET' if best.throughput / pyfunc.throughput >= GOAL else 'NOT MET'}")


def variants_for(args) -> list[Variant]:
    one = {"OMP_NUM_THREADS": "1"}
    variants = [Variant("as jobs/score.py", note="default conf, 10,000 rows per Arrow batch")]
    if args.no_variants:
        return variants
    variants.append(Variant("OMP_NUM_THREADS=1 via spark_udf extra_env", extra_env=one,
                            note="proposed jobs/score.py change"))
    if args.quick:
        return variants
    variants += [
        Variant("OMP_NUM_THREADS=1 via spark.executorEnv", worker_env=one),
        Variant("maxRecordsPerBatch 50,000", conf={ARROW_BATCH_CONF: "50000"}),
        Variant("threads=1 + maxRecordsPerBatch 50,000", extra_env=one, conf={ARROW_BATCH_CONF: "50000"}),
        Variant("threads=1 + 4 partitions", extra_env=one, partitions=4, note="repartition(4): adds a shuffle"),
    ]
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 rows, 2 repeats, the thread variant only")
    parser.add_argument("--rows", type=int, default=None, help="feature rows scored (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per path (default 3)")
    parser.add_argument("--epochs", type=int, default=1, help="torch training epochs (quality is not measured)")
    parser.add_argument("--hgb", action="store_true", help="also measure the HistGradientBoosting family")
    parser.add_argument("--no-variants", action="store_true", help="only the path as jobs/score.py runs it")
    parser.add_argument("--driver-memory", default=None, help="Spark driver memory (default: the settings')")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "flight-delay-bench")
    args = parser.parse_args()
    rows = args.rows or (200_000 if args.quick else 1_000_000)
    repeats = args.repeats or (2 if args.quick else 3)

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
        results = {family: measure_family(spark, family, model, table, repeats, variants_for(args))
                   for family, model in served.items()}
        spark.stop()
    for family, result in results.items():
        print_family(family, result, jvm_s)


if __name__ == "__main__":
    main()
