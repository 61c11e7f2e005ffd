"""Should monitoring start a retraining? A pure function, tested alone by a decision table.

    decision = decide_retraining(evidence, policy)
    decision.retrain, decision.reason, decision.to_json()

Inputs are what `jobs.monitor` measured (this day's drift, the drift verdicts of the days
before it, the served AUC over the labelled window) and what it knows about training (the
flight date the last training saw data up to, whether a training run is active); the policy
comes from settings (`retraining:` in config/settings.yaml).

Why drift can start a retrain on its own: measured on this data, a model frozen after
January does not decay steadily (its monthly AUC wanders 0.62-0.71 with no trend), while
weather drift against its training data tracks how much a retrain gains (Spearman 0.78 over
Mar-Dec; July drifts most, temperature and dewpoint dominate). A served-AUC floor alone
would wait for a loss that may never show as a trend.

| trigger | when |
| --- | --- |
| `drift` | dataset drift on this day and on each of the `drift_days - 1` days before it |
| `served_auc` | ROC AUC of served predictions over the labelled window < `served_auc_floor` (needs `min_labelled_rows`) |

Either one is a reason; both are named when both hold. A reason does not trigger when:
`enabled` is false; a `delay_model_training` run is queued or running; or the last
training saw data up to a flight date less than `cooldown_days` before this one. Time is
flight-date time, not the wall clock, so a backfill of the year obeys the same cooldown as
live days. Every outcome, trigger or not, carries a sentence saying why.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RetrainPolicy(BaseModel):
    """When monitoring triggers `delay_model_training` (settings `retraining:`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # Consecutive flight dates with dataset drift (this one included) that make a reason.
    drift_days: int = Field(ge=1, le=60)
    # Served ROC AUC below this over the labelled window makes a reason.
    served_auc_floor: float = Field(ge=0.5, le=1.0)
    # Fewer labelled served rows than this: the AUC is not judged (too noisy).
    min_labelled_rows: int = Field(gt=0)
    # No trigger within this many flight days after the last training's data ends.
    cooldown_days: int = Field(ge=0)


@dataclass(frozen=True)
class RetrainEvidence:
    """What monitoring saw on flight date `ds`."""

    ds: dt.date
    dataset_drift: bool | None  # None: not measured (no features)
    drift_share: float | None
    # Dataset drift verdicts of the days before `ds`, nearest first (None: no report that day).
    previous_drift: Sequence[bool | None] = ()
    served_auc: float | None = None  # over the labelled window; None: no labelled predictions yet
    labelled_rows: int = 0
    # The last flight date the most recent training saw (its holdout end); None: unknown.
    last_trained_through: dt.date | None = None
    training_active: bool = False
    drifted_columns: Sequence[str] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"ds": self.ds.isoformat(), "dataset_drift": self.dataset_drift, "drift_share": self.drift_share,
                "previous_drift": list(self.previous_drift), "served_auc": self.served_auc,
                "labelled_rows": self.labelled_rows,
                "last_trained_through": self.last_trained_through.isoformat() if self.last_trained_through else None,
                "training_active": self.training_active, "drifted_columns": list(self.drifted_columns)}


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reasons: tuple[str, ...]  # what argues for a retrain (may be non-empty when blocked)
    blocked_by: str | None  # why a reason did not trigger
    summary: str  # one sentence for the task log, the report and the training run's `reason`

    def to_json(self) -> dict[str, Any]:
        return {"retrain": self.retrain, "reasons": list(self.reasons), "blocked_by": self.blocked_by,
                "summary": self.summary}


def drift_streak(today: bool | None, previous: Sequence[bool | None]) -> int:
    """Consecutive drifted days ending today (a missing day breaks the streak)."""
    if not today:
        return 0
    streak = 1
    for verdict in previous:
        if not verdict:
            break
        streak += 1
    return streak


def decide_retraining(evidence: RetrainEvidence, policy: RetrainPolicy) -> RetrainDecision:
    reasons = []
    streak = drift_streak(evidence.dataset_drift, evidence.previous_drift)
    if streak >= policy.drift_days:
        columns = ", ".join(evidence.drifted_columns[:6]) or "n/a"
        reasons.append(f"dataset drift on {streak} consecutive day(s) up to {evidence.ds} "
                       f"(policy: {policy.drift_days}; share {evidence.drift_share:.2f}; top: {columns})")
    if evidence.served_auc is not None and evidence.labelled_rows >= policy.min_labelled_rows \
            and evidence.served_auc < policy.served_auc_floor:
        reasons.append(f"served ROC AUC {evidence.served_auc:.3f} on {evidence.labelled_rows} labelled flights "
                       f"is below the floor {policy.served_auc_floor}")
    if not reasons:
        parts = [f"drift streak {streak}/{policy.drift_days} day(s)"]
        if evidence.served_auc is None:
            parts.append("served AUC pending (no labelled predictions yet)")
        elif evidence.labelled_rows < policy.min_labelled_rows:
            parts.append(f"served AUC {evidence.served_auc:.3f} not judged ({evidence.labelled_rows} labelled rows "
                         f"< {policy.min_labelled_rows})")
        else:
            parts.append(f"served AUC {evidence.served_auc:.3f} >= floor {policy.served_auc_floor}")
        return RetrainDecision(False, (), None, "no retraining: " + "; ".join(parts))

    blocked = None
    if not policy.enabled:
        blocked = "retraining.enabled is false"
    elif evidence.training_active:
        blocked = "a delay_model_training run is already queued or running"
    elif evidence.last_trained_through is not None:
        since = (evidence.ds - evidence.last_trained_through).days
        if since < policy.cooldown_days:
            blocked = (f"cooldown: the last training saw data up to {evidence.last_trained_through}, "
                       f"{since} day(s) before {evidence.ds} (policy: {policy.cooldown_days})")
    if blocked:
        return RetrainDecision(False, tuple(reasons), blocked,
                               f"no retraining although {'; '.join(reasons)}: {blocked}")
    return RetrainDecision(True, tuple(reasons), None, "retrain: " + "; ".join(reasons))
