"""Would the demo's loop retrain and promote, and why? The demo's window, offline, day by day.

    python -m bench.bench_demo_window [--start 2013-06-08 [2013-07-01 ...]] [--first-model-days 18]
        [--days 30] [--cache DIR]

`make demo` (scripts/demo.py) shows the loop only where monitoring starts a training and the
gate then prefers the candidate to the champion on its holdout week. This plays a demo window
without the stack, as the stack would, for each `--start`:

- the features: the pandas twin of the features job (`tests/oracles/features_reference.py`),
  cold-started at the start as the demo's empty lake is (cancelled flights left out: they
  carry no label; the stack's drift check sees them too);
- the first model: the demo's family (HGB, the settings' hyper-parameters) on the first
  `--first-model-days` days, its last `training.holdout_days` held out and the
  `training.validation_days` before them for early stopping (as `scripts.replay` asks
  `delay_model_training`); the gate must promote it (the floor, on its own holdout), or the
  demo has no champion; it also scores its own days, as the demo's first scoring run does;
- then each clock day T for `--days` days: the champion serving at T's start scores T; monitoring
  of T checks T's drift against the champion's reference (`jobs.drift.reference_sample` of its
  training rows, both sides sampled as `jobs.monitor` samples them, Evidently with the settings'
  thresholds), measures the served ROC AUC over the labelled days of its window, and asks
  `jobs.retrain.decide_retraining` with the registry's history; a training it starts fits a
  candidate on monitoring's default windows (training from the start, the last labelled week held
  out), and `jobs.gate.decide` (the settings' policy, jobs.evaluate's slice metrics; the baseline
  check compares the HGB candidate with itself, no leakage check) decides; a promoted candidate
  serves from T + 1. Like the demo, it stops two days after the first training.

It prints each day's drift share, streak, served AUC and decision, each training's gate figures,
and a last line per start saying whether drift started a training the gate promoted: the story
`make demo` exists to tell. It reproduced the stack's figures for the Jun 8 window (first model
0.692; Jul 23 model age; candidate 0.791 vs 0.730, promoted).
"""
from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_training import labelled_features
from jobs.feeds import LABEL

DAY = dt.timedelta(days=1)
# The demo stops this many clock days after the day whose monitoring started its first training.
DAYS_AFTER_TRAINING = 2


@dataclass
class Model:
    version: str
    trained: Any
    through: dt.date  # its holdout's last day: the registry's "data ends"
    reference: Any = None  # the drift side: jobs.monitor's sample of jobs.drift.reference_sample


@dataclass
class Story:
    start: dt.date
    first_model: str  # "0.692 promoted" / "0.523 rejected: ..."
    trainings: list[dict[str, Any]] = field(default_factory=list)

    def drift_promotion(self) -> dict[str, Any] | None:
        return next((t for t in self.trainings if "drift" in t["triggers"] and t["promoted"]), None)


def play(start: dt.date, first_model_days: int, days: int, cache: Path) -> Story:
    import numpy as np
    import pandas as pd

    from jobs.drift import data_drift, reference_sample, stratified_sample
    from jobs.evaluate import holdout_metrics
    from jobs.gate import ModelMetrics, decide
    from jobs.model.baseline import HgbConfig, train_hgb
    from jobs.model.preprocessing import FeatureSpec
    from jobs.monitor import column_kinds
    from jobs.retrain import RetrainEvidence, TrainingHistory, decide_retraining
    from jobs.settings import load_settings

    settings = load_settings("local")
    holdout_days, validation_days = settings.training.holdout_days, settings.training.validation_days
    monitoring, policy = settings.monitoring, settings.retraining
    first_served = start + first_model_days * DAY
    last_day = first_served + (days - 1) * DAY
    frame = labelled_features(start, last_day, cache)
    features = FeatureSpec.from_schema(exclude=settings.training.exclude_features)
    config = HgbConfig(num_threads=settings.training.cpu_threads)

    def rows(first: dt.date, last: dt.date) -> pd.DataFrame:
        return frame[(frame["flight_date"] >= first) & (frame["flight_date"] <= last)]

    def train(version: str, holdout_end: dt.date) -> tuple[Model, ModelMetrics]:
        """A training whose holdout ends on `holdout_end` (the last labelled day), as delay_model_training's windows."""
        holdout_start = holdout_end - (holdout_days - 1) * DAY
        train_rows = rows(start, holdout_start - DAY)
        fit_end = holdout_start - (validation_days + 1) * DAY
        fit, valid = rows(start, fit_end), rows(fit_end + DAY, holdout_start - DAY)
        trained = train_hgb(fit, fit[LABEL], valid, valid[LABEL], features=features, config=config)
        reference, _ = reference_sample(train_rows, trained, monitoring.reference_rows, monitoring.sample_seed)
        side, _ = stratified_sample(reference, monitoring.max_rows_per_side, monitoring.stratify_by,
                                    monitoring.sample_seed)
        return Model(version, trained, holdout_end, side), metrics(trained, rows(holdout_start, holdout_end))

    def metrics(trained: Any, holdout: pd.DataFrame) -> ModelMetrics:
        return ModelMetrics.from_json(holdout_metrics(holdout[LABEL], trained.predict_proba(holdout), holdout))

    champion, own = train("1", first_served - DAY)
    first = decide(own, None, own, {}, settings.gate)
    story = Story(start, f"{own.roc_auc:.3f} " + ("promoted" if first.passed else
                                                  "rejected: " + "; ".join(first.reasons)))
    print(f"demo from {start}: first model on {first_model_days} days, holdout ROC AUC {story.first_model}; "
          f"serving from {first_served}", flush=True)
    if not first.passed:
        return story
    served: dict[dt.date, tuple[str, np.ndarray, np.ndarray]] = {}
    for d in (start + i * DAY for i in range(first_model_days)):  # the first scoring run: its own days
        day_rows = rows(d, d)
        served[d] = ("1", champion.trained.predict_proba(day_rows), day_rows[LABEL].to_numpy())
    verdicts: dict[dt.date, tuple[str, bool]] = {}
    newest, newest_through, newest_promoted = "1", champion.through, True
    numerical, categorical = column_kinds(champion.reference, monitoring.drift_columns)
    t = first_served
    while t <= last_day:
        today = rows(t, t)
        served[t] = (champion.version, champion.trained.predict_proba(today), today[LABEL].to_numpy())
        current, _ = stratified_sample(today, monitoring.max_rows_per_side, monitoring.stratify_by,
                                       monitoring.sample_seed)
        drift = data_drift(champion.reference, current, numerical, categorical, monitoring.drift_share,
                           numerical_threshold=monitoring.numerical_threshold,
                           categorical_threshold=monitoring.categorical_threshold).summary
        verdicts[t] = (champion.version, drift["dataset_drift"])
        previous = []
        for back in range(1, policy.drift_days):
            version, verdict = verdicts.get(t - back * DAY, (None, None))
            previous.append(verdict if version == champion.version else None)
        window = [t - back * DAY for back in range(monitoring.label_lag_days,
                                                   monitoring.label_lag_days + monitoring.performance_window_days)]
        labelled = [served[d] for d in window if d in served]
        auc, labelled_rows = None, 0
        if labelled:
            from sklearn.metrics import roc_auc_score

            probabilities = np.concatenate([p for _, p, _ in labelled])
            labels = np.concatenate([y for _, _, y in labelled])
            auc, labelled_rows = float(roc_auc_score(labels, probabilities)), len(labels)
        history = TrainingHistory(champion.through, champion.version, newest, newest_through, newest_promoted)
        evidence = RetrainEvidence(ds=t, dataset_drift=drift["dataset_drift"], drift_share=drift["drift_share"],
                                   previous_drift=previous, served_auc=auc, labelled_rows=labelled_rows,
                                   history=history, drifted_columns=tuple(drift["drifted_columns"]))
        decision = decide_retraining(evidence, policy)
        print(f"  {t}: v{champion.version}, drift share {drift['drift_share']:.2f}"
              f"{' (drift)' if drift['dataset_drift'] else ''}, served ROC AUC "
              f"{'n/a' if auc is None else f'{auc:.3f}'} -> {decision.summary}", flush=True)
        if decision.retrain:
            version = str(int(newest) + 1)
            candidate, candidate_metrics = train(version, t - monitoring.label_lag_days * DAY)
            holdout = rows(t - holdout_days * DAY, t - DAY)
            theirs = metrics(champion.trained, holdout)
            gate = decide(candidate_metrics, theirs, candidate_metrics, {}, settings.gate)
            newest, newest_through, newest_promoted = version, candidate.through, gate.passed
            story.trainings.append({"day": t, "triggers": decision.triggers, "promoted": gate.passed})
            print(f"    training v{version}: candidate ROC AUC {candidate_metrics.roc_auc:.3f} vs champion "
                  f"{theirs.roc_auc:.3f} on {len(holdout):,} flights -> "
                  + ("promoted: serves from " + str(t + DAY) if gate.passed
                     else "rejected: " + "; ".join(gate.reasons)), flush=True)
            if gate.passed:
                champion = candidate
                numerical, categorical = column_kinds(champion.reference, monitoring.drift_columns)
        if story.trainings and t >= story.trainings[0]["day"] + DAYS_AFTER_TRAINING * DAY:
            break  # where the demo stops
        t += DAY
    return story


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, nargs="+", default=[dt.date(2013, 6, 8)])
    parser.add_argument("--first-model-days", type=int, default=18)
    parser.add_argument("--days", type=int, default=30, help="clock days after the first model (the demo's --max-days)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "flight-delay-bench")
    args = parser.parse_args()

    stories = [play(start, args.first_model_days, args.days, args.cache) for start in args.start]
    print("window | first model | trainings (day: triggers -> gate) | drift started a promoted training")
    for story in stories:
        trainings = ", ".join(f"{t['day']:%b %d}: {'+'.join(t['triggers'])} -> "
                              f"{'promoted' if t['promoted'] else 'rejected'}" for t in story.trainings) or "none"
        hit = story.drift_promotion()
        print(f"{story.start} | {story.first_model} | {trainings} | "
              + (f"yes, {hit['day']:%b %d} (clock day {(hit['day'] - story.start).days + 1 - args.first_model_days})"
                 if hit else "no"))


if __name__ == "__main__":
    main()
