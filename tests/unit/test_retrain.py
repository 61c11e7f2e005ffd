"""The training decision (jobs/retrain.py): one table of cases for monitoring and the schedule,
each with the sentence it must give."""
from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from jobs.retrain import RetrainEvidence, RetrainPolicy, TrainingHistory, decide_retraining, drift_streak
from jobs.settings import load_settings

POLICY = RetrainPolicy(enabled=True, drift_days=3, served_auc_floor=0.6, min_labelled_rows=1000, cooldown_days=14,
                       max_model_age_days=28, retry_after_days=7)
DAY = dt.date(2013, 7, 15)
# The champion v4 saw data up to June 30 (15 days before DAY): outside the cooldown, not too old.
SETTLED = TrainingHistory(champion_version="4", champion_through=dt.date(2013, 6, 30), newest_version="4",
                          newest_through=dt.date(2013, 6, 30), newest_promoted=True)


def history(**changes) -> TrainingHistory:
    return TrainingHistory(**{**SETTLED.__dict__, **changes})


def evidence(**changes) -> RetrainEvidence:
    base = dict(ds=DAY, source="monitoring", dataset_drift=False, drift_share=0.1, previous_drift=(False, False),
                served_auc=0.68, labelled_rows=5000, history=SETTLED, training_active=False,
                drifted_columns=("temp", "dewp"))
    return RetrainEvidence(**{**base, **changes})


DRIFTING = {"dataset_drift": True, "drift_share": 0.45, "previous_drift": (True, True)}
FRESH = history(champion_through=dt.date(2013, 7, 10), newest_through=dt.date(2013, 7, 10))
REJECTED = history(newest_version="5", newest_through=dt.date(2013, 7, 12), newest_promoted=False)

CASES = [
    # (name, evidence changes, retrain, trigger names, blocker, text in summary)
    ("quiet day", {}, False, (), None,
     "no retraining: champion v4 is 15 day(s) old (< 28); drift streak 0/3 day(s); served AUC 0.680 >= floor 0.6"),
    ("drift today only", {"dataset_drift": True, "drift_share": 0.4}, False, (), None, "drift streak 1/3"),
    ("drift two days", {"dataset_drift": True, "drift_share": 0.4, "previous_drift": (True, False)}, False, (), None,
     "drift streak 2/3"),
    ("drift persists three days", DRIFTING, True, ("drift",), None,
     "retrain: dataset drift on 3 consecutive day(s) up to 2013-07-15 (policy: 3; share 0.45; top: temp, dewp)"),
    ("a day without a report breaks the streak", {**DRIFTING, "previous_drift": (True, None)}, False, (), None,
     "drift streak 2/3"),
    ("served AUC under the floor", {"served_auc": 0.58}, True, ("served_auc",), None,
     "served ROC AUC 0.580 on 5000 labelled flights is below the floor 0.6"),
    ("served AUC under the floor on too few rows", {"served_auc": 0.52, "labelled_rows": 400}, False, (), None,
     "served AUC 0.520 not judged (400 labelled rows < 1000)"),
    ("labels pending", {"served_auc": None, "labelled_rows": 0}, False, (), None, "served AUC pending"),
    ("drift and served AUC", {**DRIFTING, "served_auc": 0.55}, True, ("drift", "served_auc"), None,
     "dataset drift on 3 consecutive day(s)"),
    ("champion too old", {"history": history(champion_through=dt.date(2013, 6, 17))}, True, ("model_age",), None,
     "the champion v4 saw data up to 2013-06-17, 28 day(s) before 2013-07-15 (policy: at most 28)"),
    ("no champion at all", {"history": TrainingHistory()}, True, ("no_champion",), None, "no champion yet"),
    ("drift on a fresh champion: cooldown", {**DRIFTING, "history": FRESH}, False, ("drift",), "cooldown",
     "cooldown: the champion v4 saw data up to 2013-07-10, 5 day(s) before 2013-07-15 (policy: 14)"),
    ("served AUC on a fresh champion: cooldown", {"served_auc": 0.55, "history": FRESH}, False, ("served_auc",),
     "cooldown", "cooldown"),
    ("cooldown just over", {"served_auc": 0.55, "history": history(champion_through=dt.date(2013, 7, 1))}, True,
     ("served_auc",), None, "retrain:"),
    # A rejected candidate does not close the cooldown (the champion is as old as before) ...
    ("a rejected candidate waits", {**DRIFTING, "history": REJECTED}, False, ("drift",), "retry_wait",
     "retry wait: candidate v5 (data up to 2013-07-12) was not promoted, 3 day(s) before 2013-07-15 (policy: 7)"),
    # ... only for retry_after_days: then drift starts a new attempt.
    ("after the retry wait", {**DRIFTING, "history": history(newest_version="5", newest_through=dt.date(2013, 7, 8),
                                                             newest_promoted=False)}, True, ("drift",), None, "retrain:"),
    ("a rejected candidate holds model age too",
     {"history": history(champion_through=dt.date(2013, 6, 1), newest_version="5", newest_through=dt.date(2013, 7, 12),
                         newest_promoted=False)}, False, ("model_age",), "retry_wait", "retry wait"),
    ("training already running", {**DRIFTING, "training_active": True}, False, ("drift",), "training_active",
     "a delay_model_training run is already queued or running"),
    ("the schedule with a champion that is not due", {"source": "schedule", "dataset_drift": None, "drift_share": None,
                                                      "previous_drift": (), "served_auc": None}, False, (), None,
     "champion v4 is 15 day(s) old (< 28); drift and served AUC are judged daily by delay_model_monitoring"),
    ("the schedule with a champion that is due", {"source": "schedule", "dataset_drift": None, "served_auc": None,
                                                  "history": history(champion_through=dt.date(2013, 6, 1))}, True,
     ("model_age",), None, "retrain: the champion v4 saw data up to 2013-06-01, 44 day(s)"),
    ("the schedule with no champion", {"source": "schedule", "history": TrainingHistory()}, True, ("no_champion",),
     None, "retrain: no champion yet"),
]


@pytest.mark.parametrize(("changes", "retrain", "triggers", "blocker", "text"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_decision_table(changes, retrain, triggers, blocker, text):
    decision = decide_retraining(evidence(**changes), POLICY)
    assert decision.retrain is retrain
    assert decision.triggers == triggers
    assert decision.blocker == blocker
    assert text in decision.summary
    if not retrain and decision.reasons:
        assert decision.blocked_by, "a reason that does not trigger says what blocked it"


def test_a_weekly_schedule_no_longer_holds_drift_back():
    """The old rule counted the cooldown from the newest version: a weekly training kept it closed forever.
    Now a promoted weekly model is a fresh champion (cooldown), and a weekly run that did not train changes
    nothing: four weeks of drift after a champion of June 30 start a training once the cooldown is over."""
    days = [dt.date(2013, 7, 1) + dt.timedelta(days=i) for i in range(28)]
    decisions = [decide_retraining(evidence(ds=day, **DRIFTING), POLICY) for day in days]
    first = next(day for day, decision in zip(days, decisions) if decision.retrain)
    assert first == dt.date(2013, 7, 14)  # 14 days after the champion's data end
    assert all(decision.blocker == "cooldown" for decision in decisions[:13])


def test_disabled_policy_records_the_reason_but_does_not_trigger():
    decision = decide_retraining(evidence(served_auc=0.5), POLICY.model_copy(update={"enabled": False}))
    assert not decision.retrain
    assert decision.blocked_by == "retraining.enabled is false" and decision.blocker == "disabled"
    assert decision.to_json()["reasons"], "the evidence is kept for the report"


def test_drift_streak_counts_back_until_a_quiet_or_missing_day():
    assert drift_streak(True, (True, True, False, True)) == 3
    assert drift_streak(False, (True, True)) == 0
    assert drift_streak(None, (True,)) == 0
    assert drift_streak(True, (None, True)) == 1


def test_policy_comes_from_settings_and_is_validated():
    policy = load_settings("local").retraining
    assert policy.drift_days >= 1 and policy.max_model_age_days > policy.cooldown_days
    with pytest.raises(ValidationError):
        RetrainPolicy(drift_days=0, served_auc_floor=0.6, min_labelled_rows=10, cooldown_days=1)
    with pytest.raises(ValidationError, match="max_model_age_days .* must be greater than cooldown_days"):
        RetrainPolicy(drift_days=3, served_auc_floor=0.6, min_labelled_rows=10, cooldown_days=30,
                      max_model_age_days=28)


def test_the_training_monitoring_starts_is_named_by_its_day():
    from jobs.retrain import monitoring_run_id, started_on

    assert monitoring_run_id("2013-07-15") == "monitoring__2013-07-15"
    assert started_on(monitoring_run_id("2013-07-15")) == dt.date(2013, 7, 15)
    assert started_on("scheduled__2013-07-15T06:00:00+00:00") is None and started_on(None) is None
