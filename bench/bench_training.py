"""Benchmark: training the delay models (jobs/model/) on a real year.

Prints, from one run on this machine:
(a) training throughput of the torch model, samples/s (median over epochs, and over the
    whole fit) on CPU; on CUDA as well when there is a GPU (the same model and data for two
    epochs, with mixed precision), with the ratio GPU/CPU; otherwise it says so;
(b) quality on the December 2013 holdout of models trained on January-November 2013:
    torch vs the HistGradientBoosting baseline, ROC AUC, PR AUC, log loss, Brier score, best
    epoch/iterations and wall seconds of training; with `month` excluded (the default, see
    jobs/model/preprocessing.py) and, unless `--no-month-run`, once more with it included. Early stopping
    uses the last `--valid-days` days of the window (by time, as the pipeline does); the
    rest trains. Reference points measured before: HGB 0.730, logistic regression 0.709, a
    plain embedding MLP 0.714-0.717;
(c) the best single-feature ROC AUC on the holdout (each model input alone, max(auc,
    1 - auc)), the leakage guard's sanity check (about 0.64 expected; a leaked dep_delay
    scores 0.87).

Features are the pre-departure features of tests/oracles/features_reference.py (the pandas twin of
the Spark job) on the replayed raw frames, labels by jobs.feeds' rule (LABEL, DELAYED_MINUTES) from the outcomes,
cancelled/diverted flights (no arr_delay) dropped. Building a year takes a minute or two;
it is cached under `--cache` (default: the system temp directory), keyed by the dates and
the hashes of config/features.yaml and the reference implementation.

    python -m bench.bench_training [--quick] [--valid-days 21] [--no-month-run] [--cache DIR]

`--quick` (a minute or two): train January-February, holdout March, one torch model of 2 epochs.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.realdata import raw_frames
from jobs.feeds import DELAYED_MINUTES, LABEL

REFERENCE_POINTS = "reference points: HGB 0.730, logistic regression 0.709, plain embedding MLP 0.714-0.717"


# Data --------------------------------------------------------------------------------------
def labelled_features(first: dt.date, last: dt.date, cache: Path) -> pd.DataFrame:
    """Feature rows of flights first..last with `arr_delay` and the label (LABEL); cancelled flights dropped."""
    from jobs.features.params import FeatureParams
    from tests.oracles import features_reference
    from tests.oracles.features_reference import SCHEMA_FILE, reference_features
    from jobs.feeds import FLIGHT_KEY
    from jobs.settings import load_settings

    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()
                            + Path(features_reference.__file__).read_bytes()).hexdigest()[:12]
    path = cache / f"features_{first}_{last}_{digest}.parquet"
    if not path.exists():
        t = time.perf_counter()
        frames = raw_frames(first, last)
        params = FeatureParams.from_settings(load_settings("local"))
        features = reference_features(
            frames["schedule"], frames["weather"], frames["flights"], frames["planes"],
            weather_max_age_hours=params.weather_max_age_hours, default_delay_rate=params.default_delay_rate,
            default_mean_arr_delay=params.default_mean_arr_delay, holidays=params.holidays,
        )
        outcomes = frames["flights"][[*FLIGHT_KEY, "arr_delay"]]
        labelled = features.merge(outcomes, on=list(FLIGHT_KEY), how="left", validate="one_to_one")
        cache.mkdir(parents=True, exist_ok=True)
        labelled.to_parquet(path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
        print(f"built features of {first}..{last} with tests.oracles.features_reference in {time.perf_counter() - t:.0f} s "
              f"(cached: {path})")
    frame = pd.read_parquet(path)
    frame["flight_date"] = pd.to_datetime(frame["flight_date"]).dt.date
    cancelled = int(frame["arr_delay"].isna().sum())
    frame = frame[frame["arr_delay"].notna()].reset_index(drop=True)
    frame[LABEL] = (frame["arr_delay"] >= DELAYED_MINUTES).astype(np.int64)
    frame.attrs["cancelled"] = cancelled
    return frame


@dataclass(frozen=True)
class Split:
    train_first: dt.date
    train_last: dt.date  # end of the training window; its last valid_days days are the validation rows
    holdout_first: dt.date
    holdout_last: dt.date
    valid_days: int

    @property
    def valid_first(self) -> dt.date:
        return self.train_last - dt.timedelta(days=self.valid_days - 1)

    def parts(self, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
        day = frame["flight_date"]
        return {
            "train": frame[(day >= self.train_first) & (day < self.valid_first)],
            "valid": frame[(day >= self.valid_first) & (day <= self.train_last)],
            "holdout": frame[(day >= self.holdout_first) & (day <= self.holdout_last)],
        }


# Figures -----------------------------------------------------------------------------------
def quality(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    return {"roc_auc": roc_auc_score(y, p), "pr_auc": average_precision_score(y, p),
            "log_loss": log_loss(y, p), "brier": brier_score_loss(y, p)}


def train_pair(parts: dict[str, pd.DataFrame], exclude: tuple[str, ...], torch_config, hgb_config,
               label: str) -> tuple[list[tuple[str, dict[str, float], object]], object]:
    from jobs.model.baseline import train_hgb
    from jobs.model.preprocessing import FeatureSpec
    from jobs.model.training import train_torch

    features = FeatureSpec.from_schema(exclude=exclude)
    train, valid, holdout = parts["train"], parts["valid"], parts["holdout"]
    y_train, y_valid, y_holdout = (part[LABEL].to_numpy() for part in (train, valid, holdout))
    rows = []
    print(f"\n[{label}] training torch on {len(train):,} rows (validation {len(valid):,}) ...", flush=True)
    trained = train_torch(train, y_train, valid, y_valid, features=features, config=torch_config,
                          on_epoch=lambda step, m: print(
                              f"  step {step:>2}: train loss {m['train_loss']:.4f}  valid loss {m['valid_loss']:.4f}"
                              f"  valid AUC {m['valid_auc']:.4f}  {m['samples_per_s']:>9,.0f} samples/s"
                              f"  lr {m['lr']:.2e}", flush=True))
    rows.append((f"torch ({label})", quality(y_holdout, trained.predict_proba(holdout)), trained))
    print(f"[{label}] training HGB ...", flush=True)
    baseline = train_hgb(train, y_train, valid, y_valid, features=features, config=hgb_config)
    rows.append((f"HGB ({label})", quality(y_holdout, baseline.predict_proba(holdout)), baseline))
    return rows, trained


def print_quality(rows, split: Split, holdout_rows: int) -> None:
    print(f"\nQuality on the holdout {split.holdout_first}..{split.holdout_last} ({holdout_rows:,} flights), trained on "
          f"{split.train_first}..{split.train_last} (early stopping on the last {split.valid_days} days):")
    print(f"{'model':<28}{'ROC AUC':>9}{'PR AUC':>8}{'log loss':>10}{'Brier':>8}{'valid AUC':>11}"
          f"{'epochs/iters':>14}{'train s':>9}{'device':>8}")
    for name, m, trained in rows:
        print(f"{name:<28}{m['roc_auc']:>9.4f}{m['pr_auc']:>8.4f}{m['log_loss']:>10.4f}{m['brier']:>8.4f}"
              f"{trained.valid_auc:>11.4f}{trained.best_epoch:>14}{trained.train_seconds:>9.0f}{trained.device:>8}")
    by_name = {name: m["roc_auc"] for name, m, _ in rows}
    for label in ("month excluded", "month included"):
        if f"torch ({label})" in by_name:
            gap = by_name[f"torch ({label})"] - by_name[f"HGB ({label})"]
            print(f"torch - HGB ROC AUC ({label}): {gap:+.4f}")
    print(REFERENCE_POINTS)


def throughput(trained, parts: dict[str, pd.DataFrame], torch_config) -> None:
    import torch

    from jobs.model.training import train_torch

    per_epoch = [h["samples_per_s"] for h in trained.history]
    cpu = statistics.median(per_epoch)
    print(f"\nTraining throughput, torch model, {trained.device.upper()}: {cpu:,.0f} samples/s median over "
          f"{len(per_epoch)} epochs ({min(per_epoch):,.0f}-{max(per_epoch):,.0f}), {trained.samples_per_s:,.0f} "
          f"over the whole fit; batch {torch_config.batch_size}, {torch.get_num_threads()} CPU threads")
    if not torch.cuda.is_available():
        print("GPU: no GPU here (torch.cuda.is_available() is False): GPU/CPU ratio not measured")
        return
    features = trained.features
    train, valid = parts["train"], parts["valid"]
    on_gpu = train_torch(train, train[LABEL].to_numpy(), valid, valid[LABEL].to_numpy(),
                         features=features, exclude=(),
                         config=replace(torch_config, use_gpu=True, epochs=2, patience=2))
    gpu = statistics.median(h["samples_per_s"] for h in on_gpu.history)
    print(f"GPU ({torch.cuda.get_device_name(0)}, fp16 autocast): {gpu:,.0f} samples/s median over 2 epochs; "
          f"GPU/CPU ratio {gpu / cpu:.1f}x")


def single_feature_table(parts: dict[str, pd.DataFrame], exclude: tuple[str, ...], top: int = 5) -> None:
    from jobs.model.leakage import single_feature_aucs
    from jobs.model.preprocessing import FeatureSpec

    features = FeatureSpec.from_schema(exclude=exclude)
    train = pd.concat([parts["train"], parts["valid"]])
    aucs = single_feature_aucs(train, train[LABEL].to_numpy(), parts["holdout"],
                               parts["holdout"][LABEL].to_numpy(), features)
    ranked = sorted(aucs.items(), key=lambda kv: -kv[1])
    print(f"\nSingle-feature ROC AUC on the holdout (max(auc, 1-auc); categoricals by their training delay rate), "
          f"top {top} of {len(ranked)}:")
    for name, auc in ranked[:top]:
        print(f"  {name:<28}{auc:.4f}")
    print(f"best single feature: {ranked[0][0]} {ranked[0][1]:.4f} (expected about 0.64; the gate's ceiling is about 0.8)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Jan-Feb -> March, one torch model of 2 epochs")
    parser.add_argument("--valid-days", type=int, default=None, help="validation days at the end of the window")
    parser.add_argument("--no-month-run", action="store_true", help="skip the run with `month` included")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "flight-delay-bench")
    args = parser.parse_args()

    from jobs.model.baseline import HgbConfig
    from jobs.model.network import TorchConfig

    if args.quick:
        split = Split(dt.date(2013, 1, 1), dt.date(2013, 2, 28), dt.date(2013, 3, 1), dt.date(2013, 3, 31),
                      args.valid_days or 7)
        torch_config, hgb_config = TorchConfig(epochs=2, ensemble_size=1), HgbConfig(max_iter=100)
    else:
        split = Split(dt.date(2013, 1, 1), dt.date(2013, 11, 30), dt.date(2013, 12, 1), dt.date(2013, 12, 31),
                      args.valid_days or 21)
        torch_config, hgb_config = TorchConfig(), HgbConfig()

    t = time.perf_counter()
    frame = labelled_features(split.train_first, split.holdout_last, args.cache)
    parts = split.parts(frame)
    print(f"{len(frame):,} flights with an arrival ({frame.attrs['cancelled']:,} cancelled/diverted dropped), "
          f"delay rate {frame[LABEL].mean():.3f}; train {len(parts['train']):,}, valid {len(parts['valid']):,}, "
          f"holdout {len(parts['holdout']):,} (data ready in {time.perf_counter() - t:.0f} s)")

    rows, trained = train_pair(parts, ("month",), torch_config, hgb_config, "month excluded")
    throughput(trained, parts, torch_config)
    if not args.no_month_run and not args.quick:
        more, _ = train_pair(parts, (), torch_config, hgb_config, "month included")
        rows += more
    print_quality(rows, split, len(parts["holdout"]))
    members = trained.config["ensemble_size"]
    print(f"torch training wall time on {trained.device.upper()} ({len(parts['train']):,} rows, {members} member(s), "
          f"{len(trained.history)} epochs in all, up to {trained.config['epochs']} each): {trained.train_seconds:.0f} s")
    single_feature_table(parts, ("month",))


if __name__ == "__main__":
    main()
