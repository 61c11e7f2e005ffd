"""The promotion gate's decision table (jobs/gate.py): each check alone, then together."""
from __future__ import annotations

import pytest

from jobs.gate import GatePolicy, ModelMetrics, SliceMetrics, decide

POLICY = GatePolicy(auc_floor=0.6, max_auc_drop_vs_champion=0.01, slice_min_rows=500, max_slice_auc_drop=0.03,
                    max_auc_gap_to_baseline=0.02, single_feature_auc_ceiling=0.8, without_champion="promote")
HONEST = {"origin_delay_rate_7d": 0.64, "temp": 0.58, "sched_dep_hour": 0.61}


def model(auc: float, **slices: dict[str, tuple[float | None, int]]) -> ModelMetrics:
    return ModelMetrics(auc, {kind: {k: SliceMetrics(a, n) for k, (a, n) in values.items()}
                              for kind, values in slices.items()})


CHAMPION = model(0.70, carrier={"UA": (0.70, 5000), "EV": (0.68, 4000), "OO": (0.60, 30)})
BASELINE = model(0.71)


def failed(decision) -> set[str]:
    return {c.name for c in decision.checks if not c.passed}


@pytest.mark.parametrize(
    ("case", "candidate", "champion", "baseline", "features", "expected_failures"),
    [
        ("better everywhere", model(0.72, carrier={"UA": (0.72, 5000), "EV": (0.69, 4000)}), CHAMPION, BASELINE,
         HONEST, set()),
        ("a tolerated drop", model(0.692, carrier={"UA": (0.69, 5000)}), CHAMPION, BASELINE, HONEST, set()),
        ("under the floor", model(0.59), None, model(0.58), HONEST, {"auc_floor"}),
        ("worse than the champion", model(0.685), CHAMPION, model(0.69), HONEST, {"vs_champion"}),
        ("a large slice regresses", model(0.70, carrier={"UA": (0.66, 5000), "EV": (0.68, 4000)}), CHAMPION,
         BASELINE, HONEST, {"slices"}),
        # A slice under slice_min_rows, or with one class only, is not judged.
        ("a small slice regresses", model(0.70, carrier={"OO": (0.40, 30), "UA": (None, 5000)}), CHAMPION, BASELINE,
         HONEST, set()),
        ("worse than its baseline", model(0.70), CHAMPION, model(0.73), HONEST, {"vs_baseline"}),
        ("a leaking feature", model(0.90), CHAMPION, model(0.91), {**HONEST, "dep_delay": 0.87}, {"leakage"}),
        ("a leak read upside down", model(0.75), CHAMPION, BASELINE, {**HONEST, "dep_time": 0.12}, {"leakage"}),
        ("everything wrong", model(0.55, carrier={"UA": (0.50, 5000)}), CHAMPION, model(0.70),
         {"dep_delay": 0.87}, {"auc_floor", "vs_champion", "slices", "vs_baseline", "leakage"}),
    ],
)
def test_decision_table(case, candidate, champion, baseline, features, expected_failures):
    decision = decide(candidate, champion, baseline, features, POLICY)
    assert failed(decision) == expected_failures, case
    assert decision.passed == (not expected_failures)
    assert len(decision.reasons) >= 1 and all(isinstance(r, str) and r for r in decision.reasons)


def test_reasons_name_the_numbers():
    decision = decide(model(0.685, carrier={"UA": (0.65, 5000)}), CHAMPION, model(0.69), {**HONEST, "dep_delay": 0.87},
                      POLICY)
    text = " | ".join(decision.reasons)
    assert "ROC AUC 0.6850 vs champion 0.7000" in text
    assert "carrier=UA 0.7000 -> 0.6500 (5000 rows)" in text
    assert "dep_delay 0.870" in text
    card = decision.to_json()
    assert card["passed"] is False and {c["name"] for c in card["checks"]} == {
        "auc_floor", "vs_champion", "slices", "vs_baseline", "leakage"}


@pytest.mark.parametrize(("policy", "passed"), [("promote", True), ("reject", False)])
def test_without_a_champion_the_policy_decides(policy, passed):
    decision = decide(model(0.70), None, model(0.70), HONEST, POLICY.model_copy(update={"without_champion": policy}),
                      champion_problem="champion v3's artifact is missing")
    assert decision.passed is passed
    assert any("champion v3's artifact is missing" in r for r in decision.reasons) or passed
    assert {c.name for c in decision.checks if not c.passed} == (set() if passed else {"vs_champion", "slices"})


def test_metrics_round_trip_from_json():
    data = {"roc_auc": 0.7, "slices": {"origin": {"EWR": {"auc": 0.69, "rows": 1200}, "JFK": {"auc": None, "rows": 3}}}}
    metrics = ModelMetrics.from_json(data)
    assert metrics.slices["origin"]["EWR"] == SliceMetrics(0.69, 1200)
    assert metrics.slices["origin"]["JFK"].auc is None


def test_policy_is_strict():
    with pytest.raises(ValueError, match="auc_floor"):
        GatePolicy(auc_floor=0.3, max_auc_drop_vs_champion=0.01, slice_min_rows=500, max_slice_auc_drop=0.03,
                   max_auc_gap_to_baseline=0.02, single_feature_auc_ceiling=0.8)
    with pytest.raises(ValueError, match="extra"):
        GatePolicy(auc_floor=0.6, max_auc_drop_vs_champion=0.01, slice_min_rows=500, max_slice_auc_drop=0.03,
                   max_auc_gap_to_baseline=0.02, single_feature_auc_ceiling=0.8, typo=1)
