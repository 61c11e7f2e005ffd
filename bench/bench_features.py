"""Benchmark: Spark feature building against the pandas reference, and the per-day cost of a backfill.

Prints, from one run on this machine (timings are noisy: the ratios, measured side by
side in the same run, are what we report):
- `jobs.features.build_features` (Spark, local[2], 4 shuffle partitions, one in-process
  session, warmed up untimed first) against `tests.oracles.features_reference` (pandas) on the same
  input frames of real days: January 2013, the whole year, and a 10x synthetic scale-up
  (every scheduled flight and outcome copied with distinct flight and tail numbers, so
  keys stay unique and each copied tail has its original's history; carrier, origin and
  route groups grow 10x; weather unchanged, planes copied with their tails so the plane
  match rate stays the real one). Seconds, peak RSS and the ratio spark/reference.
  Spark's time covers pandas -> Spark, the build, and every column computed into Spark's
  `noop` sink (not collected: at 10x the year that is 1.2 GB of Arrow, over
  spark.driver.maxResultSize); the reference starts from the same pandas frames and ends
  with its pandas frame. The reference runs first, so its peak is given back before the
  JVM grows, and only when its peak (about 3.4 KB per flight) fits in the free memory.
- the per-day cost of writing the features partitions of N consecutive days (default 14,
  from 2013-02-01) on a local lake in a temporary directory, under four designs:
  (a) a fresh `python -m jobs.features --ds D --force` per day (Python imports + JVM start
      each day: the naive daily run);
  (b) the same process per day as a client of a running Spark Connect server (the local
      stack's design, `PIPELINE__SPARK__REMOTE`; the server's start is reported apart);
  (c) one range run, `--ds FIRST --days N --force`;
  (d) an unchanged rerun of one day, no `--force` (the fingerprint no-op, no Spark at all).
  Wall seconds per day of the subprocesses, the work per day each job reports itself
  (STEP_RESULT `seconds`: read, compute, write, no session start) and the ratio to (a).

The session of the comparisons gets an 8g driver (`--driver-memory`; the jobs' default
is 1g): at 4g, 10x the first quarter spends minutes in full GCs and 10x the year fails
broadcasting its per-date tail-number history (~11M rows). The scale-up covers the first
quarter by default, not the year: 10x the year took 6 min in Spark alone here, and the
reference peaks at 10.7 GiB, too much beside an 8 GiB JVM on a shared 24 GiB machine.
`--scale-last 2013-12-31` measures the year.

The input frames are what ingestion writes to raw for good deliveries: the publisher's
CSV read back with the validation's CSV options and raw dtypes (tests/unit/conftest.py's
`raw_frame`, one CSV per feed and range instead of per day; GX left out, which good days pass).

    python -m bench.bench_features [--quick] [--scale 10] [--scale-last 2013-12-31] [--days 14]

`--quick` (a few minutes): January, January x2, a 3-day backfill.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.realdata import raw_frames
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
YEAR_FIRST, YEAR_LAST = dt.date(2013, 1, 1), dt.date(2013, 12, 31)
QUARTER_LAST = dt.date(2013, 3, 31)
FLIGHT_COPY_STRIDE = 10_000  # flight numbers of 2013 are < 10,000: copy k gets flight + k * 10,000
GIB = 1024 ** 3
REFERENCE_BYTES_PER_FLIGHT = 3_400  # measured: 10.7 GiB peak for the 3.37M flights of the year x10


# Input frames ----------------------------------------------------------------------------
def feature_inputs(raw: dict[str, pd.DataFrame], first: dt.date, last: dt.date) -> dict[str, pd.DataFrame]:
    """What the features of first..last read: their schedules and weather, the outcomes before `last`."""
    from jobs.features.transforms import HISTORY_WINDOWS, INPUT_COLUMNS

    def between(frame: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
        dates = frame["flight_date"]
        return frame.loc[(dates >= start) & (dates <= end)].reset_index(drop=True)

    history_start = first - dt.timedelta(days=max(HISTORY_WINDOWS))
    return {
        "schedule": between(raw["schedule"], first, last)[list(INPUT_COLUMNS["schedule"])],
        "weather": between(raw["weather"], first, last)[list(INPUT_COLUMNS["weather"])],
        "outcomes": between(raw["flights"], history_start, last - dt.timedelta(days=1))[list(INPUT_COLUMNS["flights"])],
        "planes": raw["planes"],
    }


def scaled_up(inputs: dict[str, pd.DataFrame], scale: int) -> dict[str, pd.DataFrame]:
    """`scale` copies of every flight and outcome, copy k with flight + k*10,000 and tail number suffixed -k.

    The flight key stays unique, every group of carrier, origin and route grows `scale`
    times, each copied tail has the history of its original; planes are copied with
    their tails so the plane match rate stays the real one. Weather is the same.
    """
    if scale == 1:
        return inputs

    def copies(frame: pd.DataFrame, flight: bool) -> pd.DataFrame:
        parts = [frame]
        for k in range(1, scale):
            changed = {"tailnum": frame["tailnum"] + f"-{k}"}
            if flight:
                changed["flight"] = frame["flight"] + k * FLIGHT_COPY_STRIDE
            parts.append(frame.assign(**changed))
        return pd.concat(parts, ignore_index=True)

    return {"schedule": copies(inputs["schedule"], flight=True), "weather": inputs["weather"],
            "outcomes": copies(inputs["outcomes"], flight=False), "planes": copies(inputs["planes"], flight=False)}


# Measuring -------------------------------------------------------------------------------
class PeakRSS:
    """Peak resident memory of this process and of its children (the Spark JVM), sampled in a thread."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.own = self.children = 0
        self._stop = threading.Event()
        self._process = psutil.Process()

    def _sample(self) -> None:
        own = self._process.memory_info().rss
        children = 0
        for child in self._process.children(recursive=True):
            try:
                children += child.memory_info().rss
            except psutil.Error:
                pass
        self.own, self.children = max(self.own, own), max(self.children, children)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> "PeakRSS":
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


@dataclass
class Comparison:
    label: str
    flights: int
    outcomes: int
    spark_s: float | None = None
    spark_py_gib: float | None = None
    spark_jvm_gib: float | None = None
    spark_error: str = ""
    reference_s: float | None = None
    reference_rows: int | None = None
    reference_gib: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.spark_s / self.reference_s if self.spark_s and self.reference_s else None


def spark_build(spark, inputs: dict[str, pd.DataFrame], params, schema) -> None:
    """pandas -> Arrow -> Spark as the job hands its inputs over (packed: jobs.features.inputs.packed_frame),
    build_features, every column computed into Spark's noop sink.

    Not collected to the driver: at 10x the year the features are 1.2 GB of Arrow, over
    spark.driver.maxResultSize (1g); the reference, in memory already, has nothing to collect.
    """
    import pyarrow as pa

    from jobs.features.inputs import packed_frame, planes_spark_schema, raw_spark_schema
    from jobs.features.transforms import build_features

    schemas = {"schedule": raw_spark_schema("schedule"), "weather": raw_spark_schema("weather"),
               "outcomes": raw_spark_schema("flights"), "planes": planes_spark_schema()}
    frames = {name: packed_frame(spark, pa.Table.from_pandas(inputs[name][schema_.fieldNames()], preserve_index=False),
                                 schema_)
              for name, schema_ in schemas.items()}
    built = build_features(frames["schedule"], frames["weather"], frames["outcomes"], frames["planes"], params,
                           schema)
    built.write.format("noop").mode("overwrite").save()


def reference_build(inputs: dict[str, pd.DataFrame], params) -> int:
    from tests.oracles.features_reference import reference_features

    return len(reference_features(
        inputs["schedule"], inputs["weather"], inputs["outcomes"], inputs["planes"],
        weather_max_age_hours=params.weather_max_age_hours, default_delay_rate=params.default_delay_rate,
        default_mean_arr_delay=params.default_mean_arr_delay,
    ))


def spark_failure(exc: Exception) -> str:
    """The innermost cause of a failed Spark job, in one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if line.startswith("Caused by:")]
    return (causes[-1].removeprefix("Caused by:").strip() if causes else lines[0] if lines else repr(exc))[:300]


def reference_fits(flights: int) -> bool:
    """Whether the reference's peak (about 3.4 KB per flight, inputs included: 10.7 GiB at 10x the year) fits now."""
    return psutil.virtual_memory().available > 1.5 * REFERENCE_BYTES_PER_FLIGHT * flights


def compare(label: str, spark, inputs: dict[str, pd.DataFrame], params, schema, note: str = "") -> Comparison:
    """The reference first, then Spark: the JVM keeps what it grew, pandas gives its peak back."""
    result = Comparison(label, len(inputs["schedule"]), len(inputs["outcomes"]), note=note)
    print(f"  {label}, {result.flights:,} flights: ", end="", flush=True)
    if reference_fits(result.flights):
        gc.collect()
        with PeakRSS() as reference_rss:
            started = time.perf_counter()
            result.reference_rows = reference_build(inputs, params)
            result.reference_s = time.perf_counter() - started
        result.reference_gib = reference_rss.own / GIB
        print(f"reference {result.reference_s:.1f} s; ", end="", flush=True)
    else:
        result.note = "; ".join(filter(None, [note, "reference skipped: not enough free memory"]))
        print("reference skipped (not enough free memory); ", end="", flush=True)
    gc.collect()
    with PeakRSS() as spark_rss:
        started = time.perf_counter()
        try:
            spark_build(spark, inputs, params, schema)
            result.spark_s = time.perf_counter() - started
        except Exception as exc:  # a Py4JJavaError: report it, the other measurements go on
            result.spark_error = spark_failure(exc)
    result.spark_py_gib, result.spark_jvm_gib = spark_rss.own / GIB, spark_rss.children / GIB
    print(f"Spark {result.spark_s:.1f} s" if result.spark_s else
          f"Spark FAILED after {time.perf_counter() - started:.0f} s: {result.spark_error}", flush=True)
    return result


# The backfill designs --------------------------------------------------------------------
def prepare_lake(root: str, raw: dict[str, pd.DataFrame], first: dt.date, last: dt.date) -> None:
    """Raw partitions of first..last (schedule, weather) and of the outcomes they read, plus planes.csv."""
    from jobs.features.transforms import HISTORY_WINDOWS
    from jobs.lake import Lake, raw_key, reference_key
    from jobs.upstream.publish import source_table

    lake = Lake(root)
    lake.write_bytes(reference_key("planes"), source_table("planes").to_csv(index=False).encode("utf-8"))
    history_first = max(YEAR_FIRST, first - dt.timedelta(days=max(HISTORY_WINDOWS)))
    spans = {"schedule": (first, last), "weather": (first, last),
             "flights": (history_first, last - dt.timedelta(days=1))}
    for feed, (start, end) in spans.items():
        for ds, rows in raw[feed].groupby("flight_date", sort=True):
            if start <= ds <= end:
                lake.write_partition(raw_key(feed, ds.isoformat()), rows.reset_index(drop=True),
                                     {"feed": feed, "source": "bench"})


@dataclass
class Backfill:
    label: str
    days: int
    wall_s: list[float] = field(default_factory=list)
    job_s: list[float] = field(default_factory=list)  # STEP_RESULT seconds, one per date
    statuses: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def per_day(self) -> float:
        return sum(self.wall_s) / self.days

    @property
    def median_s(self) -> float:
        return statistics.median(self.wall_s)

    @property
    def job_per_day(self) -> float:
        return statistics.fmean(self.job_s) if self.job_s else float("nan")


def run_step(design: Backfill, env: dict[str, str], *args: str) -> None:
    from jobs.results import parse_results

    if design.error:
        return
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "jobs.features", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True)
    design.wall_s.append(time.perf_counter() - started)
    if done.returncode != 0:
        design.error = f"exit {done.returncode}: python -m jobs.features {' '.join(args)}\n" + done.stderr[-4000:]
        print(f"  {design.label}: FAILED\n{design.error}", flush=True)
        return
    for result in parse_results(done.stdout):
        design.job_s.append(float(result["seconds"]))
        design.statuses.append(result["status"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ConnectServer:
    """pyspark's Spark Connect server as the local stack runs it (scripts/stack.py), on a free port."""

    def __init__(self, workdir: Path, memory: str):
        self.workdir, self.memory = workdir, memory
        self.port = free_port()
        self.start_s = float("nan")

    @property
    def remote(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def __enter__(self) -> "ConnectServer":
        from scripts.stack import port_open, spark_connect_command

        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_NO_DAEMONIZE": "1", "SPARK_LOG_DIR": str(self.workdir), "SPARK_PID_DIR": str(self.workdir)}
        env.pop("PIPELINE__SPARK__REMOTE", None)
        self.log = self.workdir / "connect-server.out"
        started = time.perf_counter()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(spark_connect_command("127.0.0.1", self.port, self.memory), env=env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.perf_counter() - started > 180:
                self.__exit__()
                raise RuntimeError(f"Spark Connect server did not start:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.2)
        self.start_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def backfill(raw: dict[str, pd.DataFrame], first: dt.date, days: int,
             connect_memory: str) -> tuple[list[Backfill], float]:
    last = first + dt.timedelta(days=days - 1)
    dates = [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        root = str(Path(tmp) / "lake")
        prepare_lake(root, raw, first, last)
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("PIPELINE__") and key != "SPARK_REMOTE"}
        env.update({"LAKE_ROOT": root, "PIPELINE_ENV": "local"})

        fresh = Backfill("a. fresh process per day", days)
        print(f"  {fresh.label} ...", flush=True)
        for ds in dates:
            run_step(fresh, env, "--ds", ds, "--force")

        connect = Backfill("b. process per day, Spark Connect", days)
        print(f"  {connect.label} ...", flush=True)
        try:
            with ConnectServer(Path(tmp), connect_memory) as server:
                print(f"     server up in {server.start_s:.1f} s at {server.remote}", flush=True)
                client_env = {**env, "PIPELINE__SPARK__REMOTE": server.remote}
                for ds in dates:
                    run_step(connect, client_env, "--ds", ds, "--force")
                server_start_s = server.start_s
        except RuntimeError as exc:
            connect.error, server_start_s = str(exc), float("nan")
            print(f"  {connect.label}: FAILED\n{exc}", flush=True)

        ranged = Backfill(f"c. one range run (--days {days})", days)
        print(f"  {ranged.label} ...", flush=True)
        run_step(ranged, env, "--ds", dates[0], "--days", str(days), "--force")

        unchanged = Backfill("d. unchanged rerun of a day", 1)
        print(f"  {unchanged.label} ...", flush=True)
        run_step(unchanged, env, "--ds", dates[-1])
    return [fresh, connect, ranged, unchanged], server_start_s


# Report ----------------------------------------------------------------------------------
def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    """`value` formatted, or "-" when there is none (None or NaN)."""
    return "-" if value is None or value != value else format(value, spec) + suffix


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="January, January x2 and a 3-day backfill only")
    parser.add_argument("--scale", type=int, default=10, help="copies of every flight for the scale-up (default 10)")
    parser.add_argument("--scale-last", type=dt.date.fromisoformat, default=QUARTER_LAST,
                        help="scale up 2013-01-01..this date (default: the first quarter; the year: 2013-12-31)")
    parser.add_argument("--days", type=int, default=14, help="days of the backfill (default 14)")
    parser.add_argument("--backfill-first", type=dt.date.fromisoformat, default=dt.date(2013, 2, 1))
    parser.add_argument("--driver-memory", default="8g",
                        help="driver memory of the in-process Spark session of the comparisons (default 8g)")
    parser.add_argument("--connect-memory", default="2g",
                        help="driver memory of the Spark Connect server (default 2g, as scripts/stack.py)")
    parser.add_argument("--skip-backfill", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.scale_last, args.days = 2, dt.date(2013, 1, 31), min(args.days, 3)

    from jobs.features.params import FeatureParams
    from jobs.features.schema import load_feature_schema
    from jobs.settings import get_settings
    from jobs.spark import spark_session

    print("Load average at start (1/5/15 min, {} cores): {:.1f} {:.1f} {:.1f}".format(os.cpu_count(), *os.getloadavg()))
    started = time.perf_counter()
    settings = get_settings()
    params, schema = FeatureParams.from_settings(settings), load_feature_schema(settings.features.schema_path)
    raw = raw_frames(YEAR_FIRST, YEAR_LAST)
    print(f"Raw frames of 2013 built in {time.perf_counter() - started:.1f} s "
          f"({len(raw['schedule']):,} scheduled flights, {len(raw['weather']):,} weather rows)")

    spark_settings = settings.spark.model_copy(update={"remote": None, "driver_memory": args.driver_memory})
    started = time.perf_counter()
    spark = spark_session("bench-features", spark_settings)
    spark.sparkContext.setLogLevel("ERROR")  # task-size warnings of the local relations, one per stage
    print(f"Spark session ({spark_settings.master}, {spark_settings.shuffle_partitions} shuffle partitions, "
          f"driver {spark_settings.driver_memory}) started in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    warm = feature_inputs(raw, dt.date(2013, 1, 5), dt.date(2013, 1, 7))
    spark_build(spark, warm, params, schema)
    reference_build(warm, params)
    print(f"Warm-up (untimed, 3 days, both): {time.perf_counter() - started:.1f} s\n")

    print("Spark build_features vs pandas reference, same input frames:")
    comparisons = [compare("January 2013", spark, feature_inputs(raw, YEAR_FIRST, dt.date(2013, 1, 31)), params,
                           schema)]
    if not args.quick:
        comparisons.append(compare("2013", spark, feature_inputs(raw, YEAR_FIRST, YEAR_LAST), params, schema))
    span = {dt.date(2013, 1, 31): "January", QUARTER_LAST: "2013 Q1", YEAR_LAST: "2013"}.get(
        args.scale_last, f"2013-01-01..{args.scale_last}")
    note = "" if args.scale_last == YEAR_LAST or args.quick else f"not the year: {span} only"
    scaled = scaled_up(feature_inputs(raw, YEAR_FIRST, args.scale_last), args.scale)
    comparisons.append(compare(f"{span} x{args.scale}", spark, scaled, params, schema, note))
    del scaled
    spark.stop()
    gc.collect()

    designs: list[Backfill] = []
    server_start_s = float("nan")
    if not args.skip_backfill:
        print(f"\nBackfill of {args.days} day(s) from {args.backfill_first} on a local lake (subprocesses):")
        designs, server_start_s = backfill(raw, args.backfill_first, args.days, args.connect_memory)

    print("\nFeatures, Spark vs reference (seconds; peak RSS in GiB: this Python process / the Spark JVM, whose "
          "heap only grows: its high-water mark so far)")
    print(f"{'data':<18}{'flights':>11}{'outcomes':>11}{'spark s':>9}{'ref s':>8}{'spark/ref':>10}"
          f"{'RSS spark':>12}{'RSS ref':>9}")
    for c in comparisons:
        spark_s = fmt(c.spark_s, ".1f") if not c.spark_error else "failed"
        print(f"{c.label:<18}{c.flights:>11,}{c.outcomes:>11,}{spark_s:>9}{fmt(c.reference_s, '.1f'):>8}"
              f"{fmt(c.ratio, '.2f', 'x'):>10}{c.spark_py_gib:>6.1f}/{c.spark_jvm_gib:<4.1f}"
              f"{fmt(c.reference_gib, '.1f'):>8}  {c.note}")
        if c.spark_error:
            print(f"  Spark failed: {c.spark_error}")
        if c.reference_rows is not None and c.reference_rows != c.flights:
            print(f"  !! the reference built {c.reference_rows:,} rows for {c.flights:,} flights")
    if designs:
        base = designs[0].per_day if not designs[0].error else float("nan")
        print(f"\nBackfill of {args.days} day(s): seconds per day (wall of the subprocesses / work the job reports)")
        print(f"{'design':<38}{'wall/day':>9}{'first':>7}{'median':>7}{'job/day':>8}{'vs a':>7}  statuses")
        for d in designs:
            if d.error:
                print(f"{d.label:<38}{'failed':>9}")
                continue
            statuses = ", ".join(f"{n} {s}" for s, n in sorted(
                {s: d.statuses.count(s) for s in d.statuses}.items()))
            print(f"{d.label:<38}{d.per_day:>9.2f}{d.wall_s[0]:>7.1f}{d.median_s:>7.1f}{d.job_per_day:>8.2f}"
                  f"{fmt(d.per_day / base, '.2f', 'x'):>7}  {statuses}")
        print(f"(first, median: wall seconds of one subprocess; a range run is one subprocess for all days. "
              f"Spark Connect server start, paid once: {fmt(server_start_s, '.1f')} s)")

    ratios = ", ".join(f"{c.label} {fmt(c.ratio, '.2f', 'x')}" for c in comparisons)
    summary = f"\nSummary: Spark/reference {ratios}"
    if designs and not designs[0].error:
        summary += "; backfill per day vs a fresh process each day: " + ", ".join(
            f"{d.label.split('.')[0]} {fmt(d.per_day / base, '.2f', 'x')}" for d in designs[1:] if not d.error)
    print(summary)
    load = os.getloadavg()
    shared = " (above the core count: another workload shared the machine; seconds are inflated, ratios less so)"
    print("Load average at the end: {:.1f} {:.1f} {:.1f}".format(*load) + (shared if load[1] > os.cpu_count() else ""))


if __name__ == "__main__":
    main()
