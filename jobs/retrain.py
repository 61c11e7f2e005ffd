"""Should `delay_model_training` train now? One decision for monitoring and the schedule, tested by a table.

    decision = decide_retraining(evidence, policy)
    decision.retrain, decision.reasons, decision.blocked_by, decision.summary

Two callers, one function: `jobs.monitor` asks every flight date (source `monitoring`: this
day's drift, the drift verdicts of the days before it, the served AUC over the labelled
window), and the weekly scheduled run of `delay_model_training` asks before it trains (source
`schedule`: no drift or AUC of its own). Both pass what the registry says about training
(`TrainingHistory`: the flight date the champion's data ends on, the newest candidate and
whether it was promoted) and whether a training run is active. The policy is settings
`retraining:`. Time is flight-date time, never the wall clock, so a replay of the year obeys
the same rules as live days.

Reasons (any one trains; all that hold are named):

| reason | holds when |
| --- | --- |
| `no_champion` | there is no champion at all (the first model) |
| `model_age` | the champion's data ends `max_model_age_days` or more before this date |
| `drift` | dataset drift on this date and on each of the `drift_days - 1` dates before it |
| `served_auc` | served ROC AUC over the labelled window < `served_auc_floor`, on >= `min_labelled_rows` flights |

Blockers (the first that holds wins; the reasons are kept as evidence):

| blocker | holds when | applies to |
| --- | --- | --- |
| `disabled` | `enabled` is false | every reason |
| `training_active` | a `delay_model_training` run is queued or running | every reason |
| `cooldown` | the champion's data ends less than `cooldown_days` before this date (a fresh champion) | `drift`, `served_auc` |
| `retry_wait` | the newest candidate was not promoted (gate rejected, or rolled back) and its data ends less than `retry_after_days` before this date | every reason but `no_champion` |

Why the cooldown counts from the champion and not from the newest version: a scheduled or
rejected training does not make the serving model any fresher, so it must not hold drift back
(it did: a weekly schedule kept a 14-day cooldown closed forever). A rejected candidate waits
`retry_after_days` instead, so a drifting month does not start a training a day.

Why drift can start a retrain on its own: measured on this data, a model frozen after
January does not decay steadily (its monthly AUC wanders 0.62-0.71 with no trend), while
weather drift against its training data tracks how much a retrain gains (Spearman 0.78 over
Mar-Dec; July drifts most, temperature and dewpoint dominate). A served-AUC floor alone
would wait for a loss that may never show as a trend; model age bounds how stale a champion
gets when nothing else fires.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The run id of the delay_model_training run that monitoring of flight date D starts: one per monitored day at
# most, and how the training DAG, the registry's training log, the alerts and the replay find who started it.
MONITORING_RUN_PREFIX = "monitoring__"


def monitoring_run_id(ds: str) -> str:
    """The training run monitoring of `ds` starts (`ds` may be a template, e.g. "{{ ds }}")."""
    return f"{MONITORING_RUN_PREFIX}{ds}"


def started_on(run_id: str | None) -> dt.date | None:
    """The monitored flight date that started a training run, from its run id; None when monitoring did not."""
    if not (run_id or "").startswith(MONITORING_RUN_PREFIX):
        return None
    return dt.date.fromisoformat(run_id[len(MONITORING_RUN_PREFIX):len(MONITORING_RUN_PREFIX) + 10])

Source = Literal["monitoring", "schedule"]


class RetrainPolicy(BaseModel):
    """When `delay_model_training` trains (settings `retraining:`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # Consecutive flight dates with dataset drift (this one included) that make a reason.
    drift_days: int = Field(ge=1, le=60)
    # Served ROC AUC below this over the labelled window makes a reason.
    served_auc_floor: float = Field(ge=0.5, le=1.0)
    # Fewer labelled served rows than this: the AUC is not judged (too noisy).
    min_labelled_rows: int = Field(gt=0)
    # Drift and served AUC do not replace a champion whose data ends fewer days ago than this.
    cooldown_days: int = Field(ge=0)
    # A champion whose data ends this many days ago or more is retrained whatever else holds.
    max_model_age_days: int = Field(default=28, ge=1)
    # After a candidate that was not promoted, no new attempt until its data is this old.
    retry_after_days: int = Field(default=7, ge=0)

    @model_validator(mode="after")
    def _age_after_cooldown(self) -> RetrainPolicy:
        if self.max_model_age_days <= self.cooldown_days:
            raise ValueError(f"max_model_age_days ({self.max_model_age_days}) must be greater than cooldown_days "
                             f"({self.cooldown_days}): a champion would be due before it may be replaced")
        return self


@dataclass(frozen=True)
class TrainingHistory:
    """What the registry says about training (jobs.registry.training_history)."""

    # The last flight date the champion's training saw (its holdout end); None: no champion.
    champion_through: dt.date | None = None
    champion_version: str | None = None
    # The newest registered version, its data end, and whether it is (or was) the champion.
    newest_version: str | None = None
    newest_through: dt.date | None = None
    newest_promoted: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"champion_version": self.champion_version,
                "champion_through": self.champion_through.isoformat() if self.champion_through else None,
                "newest_version": self.newest_version,
                "newest_through": self.newest_through.isoformat() if self.newest_through else None,
                "newest_promoted": self.newest_promoted}


@dataclass(frozen=True)
class RetrainEvidence:
    """What the caller saw on flight date `ds`."""

    ds: dt.date
    source: Source = "monitoring"
    dataset_drift: bool | None = None  # None: not measured (the schedule, or no features)
    drift_share: float | None = None
    # Dataset drift verdicts of the days before `ds`, nearest first (None: no report that day).
    previous_drift: Sequence[bool | None] = ()
    served_auc: float | None = None  # over the labelled window; None: no labelled predictions yet
    labelled_rows: int = 0
    history: TrainingHistory = field(default_factory=TrainingHistory)
    training_active: bool = False
    drifted_columns: Sequence[str] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"ds": self.ds.isoformat(), "source": self.source, "dataset_drift": self.dataset_drift,
                "drift_share": self.drift_share, "previous_drift": list(self.previous_drift),
                "served_auc": self.served_auc, "labelled_rows": self.labelled_rows,
                "history": self.history.to_json(), "training_active": self.training_active,
                "drifted_columns": list(self.drifted_columns)}


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reasons: tuple[str, ...]  # what argues for a retrain (may be non-empty when blocked)
    blocked_by: str | None  # why the reasons did not trigger
    summary: str  # one sentence for the task log, the report and the training run's `reason`
    # Short names of the reasons (`drift`, `model_age`, ...) and of the blocker, for tables and charts.
    triggers: tuple[str, ...] = ()
    blocker: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"retrain": self.retrain, "reasons": list(self.reasons), "blocked_by": self.blocked_by,
                "summary": self.summary, "triggers": list(self.triggers), "blocker": self.blocker}


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


def _age(ds: dt.date, through: dt.date | None) -> int | None:
    return None if through is None else (ds - through).days


def decide_retraining(evidence: RetrainEvidence, policy: RetrainPolicy) -> RetrainDecision:
    history = evidence.history
    found: dict[str, str] = {}
    age = _age(evidence.ds, history.champion_through)
    if history.champion_version is None:
        found["no_champion"] = "no champion yet: the first model"
    elif age is not None and age >= policy.max_model_age_days:
        found["model_age"] = (f"the champion v{history.champion_version} saw data up to {history.champion_through}, "
                              f"{age} day(s) before {evidence.ds} (policy: at most {policy.max_model_age_days})")
    streak = drift_streak(evidence.dataset_drift, evidence.previous_drift)
    if streak >= policy.drift_days:
        columns = ", ".join(evidence.drifted_columns[:6]) or "n/a"
        found["drift"] = (f"dataset drift on {streak} consecutive day(s) up to {evidence.ds} "
                          f"(policy: {policy.drift_days}; share {evidence.drift_share:.2f}; top: {columns})")
    if evidence.served_auc is not None and evidence.labelled_rows >= policy.min_labelled_rows \
            and evidence.served_auc < policy.served_auc_floor:
        found["served_auc"] = (f"served ROC AUC {evidence.served_auc:.3f} on {evidence.labelled_rows} labelled "
                               f"flights is below the floor {policy.served_auc_floor}")
    if not found:
        return RetrainDecision(False, (), None, "no retraining: " + "; ".join(_quiet_parts(evidence, policy, streak)))

    blocker, blocked = _blocker(evidence, policy, found, age)
    triggers, reasons = tuple(found), tuple(found.values())
    if blocked:
        return RetrainDecision(False, reasons, blocked, f"no retraining although {'; '.join(reasons)}: {blocked}",
                               triggers, blocker)
    return RetrainDecision(True, reasons, None, "retrain: " + "; ".join(reasons), triggers)


def _quiet_parts(evidence: RetrainEvidence, policy: RetrainPolicy, streak: int) -> list[str]:
    """Why nothing argues for a retrain, part by part."""
    history = evidence.history
    parts = [f"champion v{history.champion_version} is {_age(evidence.ds, history.champion_through)} day(s) old "
             f"(< {policy.max_model_age_days})" if history.champion_through else
             f"champion v{history.champion_version} has no recorded training window"]
    if evidence.source == "schedule":
        return parts + ["drift and served AUC are judged daily by delay_model_monitoring"]
    parts.append(f"drift streak {streak}/{policy.drift_days} day(s)")
    if evidence.served_auc is None:
        parts.append("served AUC pending (no labelled predictions yet)")
    elif evidence.labelled_rows < policy.min_labelled_rows:
        parts.append(f"served AUC {evidence.served_auc:.3f} not judged ({evidence.labelled_rows} labelled rows "
                     f"< {policy.min_labelled_rows})")
    else:
        parts.append(f"served AUC {evidence.served_auc:.3f} >= floor {policy.served_auc_floor}")
    return parts


def _blocker(evidence: RetrainEvidence, policy: RetrainPolicy, found: dict[str, str],
             age: int | None) -> tuple[str | None, str | None]:
    """The first blocker of the module table that holds for these reasons: (name, sentence)."""
    history = evidence.history
    if not policy.enabled:
        return "disabled", "retraining.enabled is false"
    if evidence.training_active:
        return "training_active", "a delay_model_training run is already queued or running"
    if age is not None and age < policy.cooldown_days and set(found) <= {"drift", "served_auc"}:
        return "cooldown", (f"cooldown: the champion v{history.champion_version} saw data up to "
                            f"{history.champion_through}, {age} day(s) before {evidence.ds} "
                            f"(policy: {policy.cooldown_days})")
    attempt_age = _age(evidence.ds, history.newest_through)
    if not history.newest_promoted and attempt_age is not None and attempt_age < policy.retry_after_days \
            and "no_champion" not in found:
        return "retry_wait", (f"retry wait: candidate v{history.newest_version} (data up to {history.newest_through}) "
                              f"was not promoted, {attempt_age} day(s) before {evidence.ds} "
                              f"(policy: {policy.retry_after_days})")
    return None, None
