"""The retraining decision (jobs/retrain.py): a table of cases, each with the sentence it must give."""
from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from jobs.retrain import RetrainEvidence, RetrainPolicy, decide_retraining, drift_streak
from jobs.settings import load_settings

POLICY = RetrainPolicy(enabled=True, drift_days=3, served_auc_floor=0.6, min_labelled_rows=1000, cooldown_days=14)
DAY = dt.date(2013, 7, 15)


def evidence(**changes) -> RetrainEvidence:
    base = dict(ds=DAY, dataset_drift=False, drift_share=0.1, previous_drift=(False, False), served_auc=0.68,
                labelled_rows=5000, last_trained_through=dt.date(2013, 5, 31), training_active=False,
                drifted_columns=("temp", "dewp"))
    return RetrainEvidence(**{**base, **changes})


CASES = [
    # (name, evidence changes, retrain, text in summary)
    ("quiet day", {}, False, "no retraining: drift streak 0/3 day(s); served AUC 0.680 >= floor 0.6"),
    ("drift today only", {"dataset_drift": True, "drift_share": 0.4}, False, "drift streak 1/3"),
    ("drift two days", {"dataset_drift": True, "drift_share": 0.4, "previous_drift": (True, False)}, False,
     "drift streak 2/3"),
    ("drift persists three days", {"dataset_drift": True, "drift_share": 0.45, "previous_drift": (True, True)}, True,
     "retrain: dataset drift on 3 consecutive day(s) up to 2013-07-15 (policy: 3; share 0.45; top: temp, dewp)"),
    ("a day without a report breaks the streak", {"dataset_drift": True, "drift_share": 0.4,
                                                  "previous_drift": (True, None)}, False, "drift streak 2/3"),
    ("served AUC under the floor", {"served_auc": 0.58}, True,
     "served ROC AUC 0.580 on 5000 labelled flights is below the floor 0.6"),
    ("served AUC under the floor on too few rows", {"served_auc": 0.52, "labelled_rows": 400}, False,
     "served AUC 0.520 not judged (400 labelled rows < 1000)"),
    ("labels pending", {"served_auc": None, "labelled_rows": 0}, False, "served AUC pending"),
    ("both reasons", {"dataset_drift": True, "drift_share": 0.5, "previous_drift": (True, True), "served_auc": 0.55},
     True, "dataset drift on 3 consecutive day(s)"),
    ("inside the cooldown", {"served_auc": 0.55, "last_trained_through": dt.date(2013, 7, 10)}, False,
     "cooldown: the last training saw data up to 2013-07-10, 5 day(s) before 2013-07-15 (policy: 14)"),
    ("cooldown just over", {"served_auc": 0.55, "last_trained_through": dt.date(2013, 7, 1)}, True, "retrain:"),
    ("training already running", {"served_auc": 0.55, "training_active": True}, False,
     "a delay_model_training run is already queued or running"),
    ("never trained (no cooldown to respect)", {"served_auc": 0.55, "last_trained_through": None}, True, "retrain:"),
]


@pytest.mark.parametrize(("changes", "retrain", "text"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_decision_table(changes, retrain, text):
    decision = decide_retraining(evidence(**changes), POLICY)
    assert decision.retrain is retrain
    assert text in decision.summary
    if not retrain and decision.reasons:
        assert decision.blocked_by, "a reason that does not trigger says what blocked it"


def test_both_reasons_are_named():
    decision = decide_retraining(evidence(dataset_drift=True, drift_share=0.5, previous_drift=(True, True),
                                          served_auc=0.55), POLICY)
    assert len(decision.reasons) == 2


def test_disabled_policy_records_the_reason_but_does_not_trigger():
    decision = decide_retraining(evidence(served_auc=0.5), POLICY.model_copy(update={"enabled": False}))
    assert not decision.retrain
    assert decision.blocked_by == "retraining.enabled is false"
    assert decision.to_json()["reasons"], "the evidence is kept for the report"


def test_drift_streak_counts_back_until_a_quiet_or_missing_day():
    assert drift_streak(True, (True, True, False, True)) == 3
    assert drift_streak(False, (True, True)) == 0
    assert drift_streak(None, (True,)) == 0
    assert drift_streak(True, (None, True)) == 1


def test_policy_comes_from_settings_and_is_validated():
    assert load_settings("local").retraining.drift_days >= 1
    with pytest.raises(ValidationError):
        RetrainPolicy(drift_days=0, served_auc_floor=0.6, min_labelled_rows=10, cooldown_days=1)
