"""The promotion gate: may a candidate model become `champion`? A pure function, tested alone.

    decision = decide(candidate, champion, baseline, single_feature_auc, policy)
    decision.passed, decision.reasons, decision.to_json()

Inputs are metrics computed on the same holdout period (jobs.evaluate); the policy comes
from settings (`gate:` in config/settings.yaml). A candidate is promoted only if every check
passes (DESIGN.md, "The gate"):

| check | passes when |
| --- | --- |
| `auc_floor` | candidate ROC AUC >= `auc_floor` |
| `vs_champion` | candidate AUC >= champion AUC - `max_auc_drop_vs_champion` (no champion: see below) |
| `slices` | no slice (carrier, origin) with >= `slice_min_rows` holdout rows and both classes loses more than `max_slice_auc_drop` AUC against the champion on that slice |
| `vs_baseline` | candidate AUC >= its HistGradientBoosting baseline's AUC - `max_auc_gap_to_baseline` |
| `leakage` | no single input feature scores ROC AUC above `single_feature_auc_ceiling` on its own |

Why these numbers live in settings and how they were chosen: on pre-departure features this
data supports ROC AUC of about 0.62-0.77 depending on the month, so the floor sits below that
range (a habitual 0.80 would block every model); the best honest feature alone scores 0.64,
a leaked `dep_delay` 0.87, while a whole model with the leak reaches only 0.90, so only a
per-feature ceiling catches a leak. A single-feature AUC below 0.5 is read as max(auc, 1-auc):
a feature that predicts the negative class that well leaks just the same.

No champion (the first model) or a champion that could not be evaluated (its artifact is
missing): `vs_champion` and `slices` pass only if `policy.without_champion` is "promote";
with "reject" the candidate stays challenger and the reason says why.

MLflow's `MetricThreshold` was considered for the floor and the comparison with the
champion; it expresses "at least this much better than the baseline" (a positive
`min_absolute_change`), not the tolerated regression this gate needs, so the checks are
written out here, each with its value, its threshold and a sentence for the model card.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field


class GatePolicy(BaseModel):
    """The promotion policy (settings `gate:`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auc_floor: float = Field(ge=0.5, le=1.0)
    max_auc_drop_vs_champion: float = Field(ge=0.0, le=0.5)
    slice_min_rows: int = Field(gt=0)
    max_slice_auc_drop: float = Field(ge=0.0, le=0.5)
    max_auc_gap_to_baseline: float = Field(ge=0.0, le=0.5)
    single_feature_auc_ceiling: float = Field(gt=0.5, le=1.0)
    without_champion: Literal["promote", "reject"] = "promote"


@dataclass(frozen=True)
class SliceMetrics:
    auc: float | None  # None: one class only in this slice
    rows: int


@dataclass(frozen=True)
class ModelMetrics:
    """What the gate needs of one model on the holdout: its ROC AUC and per-slice AUCs."""

    roc_auc: float
    slices: Mapping[str, Mapping[str, SliceMetrics]] = field(default_factory=dict)  # {"carrier": {"UA": ...}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ModelMetrics":
        slices = {
            kind: {key: SliceMetrics(value.get("auc"), int(value["rows"])) for key, value in values.items()}
            for kind, values in (data.get("slices") or {}).items()
        }
        return cls(float(data["roc_auc"]), slices)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    reason: str


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> list[str]:
        """Why it failed (the failed checks), or every check's sentence when it passed."""
        failed = [c.reason for c in self.checks if not c.passed]
        return failed or [c.reason for c in self.checks]

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "checks": [asdict(c) for c in self.checks]}


def _auc_check(name: str, value: float, reference: float, margin: float, what: str) -> Check:
    threshold = reference - margin
    passed = value >= threshold - 1e-12
    verb = "within" if passed else "more than"
    return Check(name, passed, round(value, 6), round(threshold, 6),
                 f"ROC AUC {value:.4f} vs {what} {reference:.4f}: {verb} the tolerated drop of {margin:.3f}")


def _slice_regressions(candidate: ModelMetrics, champion: ModelMetrics, policy: GatePolicy) -> tuple[list[str], int]:
    """Slices large enough to judge whose AUC dropped past the margin, and how many were judged."""
    worse, judged = [], 0
    for kind, slices in sorted(candidate.slices.items()):
        for key, mine in sorted(slices.items()):
            theirs = champion.slices.get(kind, {}).get(key)
            if theirs is None or mine.auc is None or theirs.auc is None or mine.rows < policy.slice_min_rows:
                continue
            judged += 1
            if mine.auc < theirs.auc - policy.max_slice_auc_drop - 1e-12:
                worse.append(f"{kind}={key} {theirs.auc:.4f} -> {mine.auc:.4f} ({mine.rows} rows)")
    return worse, judged


def decide(
    candidate: ModelMetrics,
    champion: ModelMetrics | None,
    baseline: ModelMetrics,
    single_feature_auc: Mapping[str, float],
    policy: GatePolicy,
    champion_problem: str | None = None,
) -> GateDecision:
    """Every check of the policy on the candidate; `champion_problem` says why there is no champion metric."""
    checks = [
        Check("auc_floor", candidate.roc_auc >= policy.auc_floor, round(candidate.roc_auc, 6), policy.auc_floor,
              f"ROC AUC {candidate.roc_auc:.4f} {'>=' if candidate.roc_auc >= policy.auc_floor else '<'} "
              f"floor {policy.auc_floor:.3f}"),
    ]
    if champion is None:
        why = champion_problem or "no champion yet (first model)"
        promote = policy.without_champion == "promote"
        note = "policy promotes a first model" if promote else "policy requires a champion to compare with"
        checks.append(Check("vs_champion", promote, None, None, f"{why}: {note}"))
        checks.append(Check("slices", promote, None, None, f"{why}: no slice comparison"))
    else:
        checks.append(_auc_check("vs_champion", candidate.roc_auc, champion.roc_auc, policy.max_auc_drop_vs_champion,
                                 "champion"))
        worse, judged = _slice_regressions(candidate, champion, policy)
        checks.append(Check(
            "slices", not worse, float(len(worse)), 0.0,
            f"{len(worse)} of {judged} slices with >= {policy.slice_min_rows} rows lost more than "
            f"{policy.max_slice_auc_drop:.3f} AUC" + (f": {'; '.join(worse[:5])}" if worse else ""),
        ))
    checks.append(_auc_check("vs_baseline", candidate.roc_auc, baseline.roc_auc, policy.max_auc_gap_to_baseline,
                             "HGB baseline"))
    strength = {name: max(auc, 1.0 - auc) for name, auc in single_feature_auc.items()
                if auc is not None and not math.isnan(auc)}
    leaks = sorted((name for name, auc in strength.items() if auc > policy.single_feature_auc_ceiling),
                   key=lambda name: -strength[name])
    best = max(strength.items(), key=lambda item: item[1], default=("none", 0.5))
    checks.append(Check(
        "leakage", not leaks, round(best[1], 6), policy.single_feature_auc_ceiling,
        (f"features scoring ROC AUC above {policy.single_feature_auc_ceiling:.2f} alone (a leak?): "
         + ", ".join(f"{name} {strength[name]:.3f}" for name in leaks)) if leaks else
        f"best single feature {best[0]} scores {best[1]:.3f} alone (ceiling {policy.single_feature_auc_ceiling:.2f})",
    ))
    return GateDecision(all(c.passed for c in checks), tuple(checks))
