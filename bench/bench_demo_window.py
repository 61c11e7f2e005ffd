"""Would the demo's gate promote a retrained model? The demo's window, offline, day by day.

    python -m bench.bench_demo_window [--start 2013-06-08] [--first-model-days 18] [--days 10] [--cache DIR]

`make demo` (scripts/demo.py) shows the loop only where a retrained candidate is better than the
champion on the gate's holdout week. This finds such windows without running the stack: for a
demo from `--start` with `--first-model-days` days before its first model, it builds the
window's features with the pandas twin of the features job (`tests/oracles/features_reference.py`,
cold-started at `--start` as the demo's empty lake is), fits the demo's family (HGB, the
settings' hyper-parameters) as the pipeline's windows do:

- the champion: the first `--first-model-days` days, the last 7 held out, the 7 before them for
  early stopping (as `scripts.replay` asks `delay_model_training`); the gate must promote it
  first (the floor, on its own holdout week), or the demo has no champion;
- a candidate for each monitoring day T from the champion's cooldown end (its first served day
  + `retraining.cooldown_days`) for `--days` days: trained on `--start` .. T-15, early stopping on
  T-14..T-8, held out on T-7..T-1 (monitoring's default windows);

and prints, for each T, both models' holdout ROC AUC and the gate's decision (`jobs.gate.decide`
with the settings' policy and jobs.evaluate's slice metrics; the baseline check compares the HGB
candidate with itself, and no leakage check runs). Which day monitoring actually starts the
training on depends on its drift and served-AUC verdicts: a window worth demonstrating is one
where the gate promotes on every day of the range.
"""
from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from pathlib import Path

from bench.bench_training import labelled_features
from jobs.feeds import LABEL

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 6, 8))
    parser.add_argument("--first-model-days", type=int, default=18)
    parser.add_argument("--days", type=int, default=10, help="monitoring days to try from the cooldown's end")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "flight-delay-bench")
    args = parser.parse_args()

    from jobs.evaluate import holdout_metrics
    from jobs.gate import ModelMetrics, decide
    from jobs.model.baseline import HgbConfig, train_hgb
    from jobs.model.preprocessing import FeatureSpec
    from jobs.settings import load_settings

    settings = load_settings("local")
    # The pipeline's windows: the last labelled days held out, the days before them for early stopping.
    holdout_days, validation_days = settings.training.holdout_days, settings.training.validation_days
    day = dt.timedelta(days=1)
    first_served = args.start + args.first_model_days * day
    first_t = first_served + settings.retraining.cooldown_days * day
    last_t = first_t + (args.days - 1) * day
    frame = labelled_features(args.start, last_t - day, args.cache)
    features = FeatureSpec.from_schema(exclude=settings.training.exclude_features)
    config = HgbConfig(num_threads=settings.training.cpu_threads)

    def rows(first: dt.date, last: dt.date):
        return frame[(frame["flight_date"] >= first) & (frame["flight_date"] <= last)]

    def fit(last_fit: dt.date):
        train, valid = rows(args.start, last_fit), rows(last_fit + day, last_fit + validation_days * day)
        return train_hgb(train, train[LABEL], valid, valid[LABEL], features=features, config=config)

    def metrics(model, holdout) -> ModelMetrics:
        return ModelMetrics.from_json(holdout_metrics(holdout[LABEL], model.predict_proba(holdout), holdout))

    champion = fit(first_served - (holdout_days + validation_days + 1) * day)
    own = metrics(champion, rows(first_served - holdout_days * day, first_served - day))
    first = decide(own, None, own, {}, settings.gate)
    print(f"demo from {args.start}, first model on {args.first_model_days} days, serving from {first_served}; "
          f"cooldown ends {first_t}")
    print(f"the first model: ROC AUC {own.roc_auc:.3f} on its holdout -> "
          + ("promoted" if first.passed else "rejected: " + "; ".join(first.reasons)
             + " (the demo stops there: no champion)"), flush=True)
    promoted = 0
    t = first_t
    while t <= last_t:
        holdout = rows(t - holdout_days * day, t - day)
        candidate = metrics(fit(t - (holdout_days + validation_days + 1) * day), holdout)
        theirs = metrics(champion, holdout)
        decision = decide(candidate, theirs, candidate, {}, settings.gate)
        promoted += decision.passed
        print(f"monitoring day {t}: candidate ROC AUC {candidate.roc_auc:.3f}, champion {theirs.roc_auc:.3f} on "
              f"{len(holdout):,} flights -> {'promoted' if decision.passed else 'rejected: ' + '; '.join(decision.reasons)}",
              flush=True)
        t += day
    print(f"the gate promotes on {promoted} of {args.days} day(s)")


if __name__ == "__main__":
    main()
