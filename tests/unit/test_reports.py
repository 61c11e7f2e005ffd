"""The HTML pages (model card, backtest, year replay) render from their templates, escaped, with their numbers."""
from __future__ import annotations

from jobs.backtest import render_html as backtest_html
from jobs.evaluate import render_card_html
from jobs.replay_report import render_html as replay_html

HOSTILE = '<script>alert("x")</script>'
METRICS = {"roc_auc": 0.65123, "pr_auc": 0.4, "log_loss": 0.6, "brier": 0.2, "calibration": {"ece": 0.031}}


def _escaped(page: str) -> None:
    assert HOSTILE not in page and "&lt;script&gt;" in page


def test_model_card_page():
    card = {"model": "flight_delay", "version": "3", "reason": HOSTILE, "training_set": "abc",
            "holdout": {"start": "2013-04-10", "end": "2013-04-16", "rows": 6100}, "generated_at": "2026-12-06T10:00:00Z",
            "decision": {"passed": False, "checks": [
                {"name": "min_roc_auc", "passed": True, "value": 0.65, "threshold": 0.6, "reason": "floor"},
                {"name": "vs_champion", "passed": False, "value": 0.631, "threshold": None, "reason": "worse"}]},
            "models": {"candidate": {"version": "3", "metrics": METRICS}, "champion": {"run_id": "r1", "metrics": METRICS},
                       "baseline": {"run_id": "r2", "metrics": None}}}
    page = render_card_html(card)
    _escaped(page)
    assert "flight_delay version 3: REJECTED" in page and "<b>FAIL</b>" in page and "0.6512" in page
    assert page.count("<tr><td>") == 4  # two checks, two models with metrics (the baseline without is left out)


def test_backtest_page():
    side = {"roc_auc": 0.7, "pr_auc": 0.5, "log_loss": 0.55, "calibration_ece": None}
    summary = {"id": "bt1", "threshold": 0.5, "generated_at": "now", "warnings": [HOSTILE], "left_out": {"2013-03-02": "no features"},
               "model": {"name": "flight_delay", "version": "2", "run_id": None, "source": "alias champion"},
               "window": {"start": "2013-03-01", "end": "2013-03-03"}, "request": {},
               "days": [{"ds": "2013-03-01", "rows": 800, "cancelled": 5, "backtest": side, "served": None,
                         "served_versions": [], "served_status": "not served"}],
               "totals": {"days": 1, "rows": 800, "cancelled": 5, "backtest": side, "served": side, "served_versions": ["1"],
                          "served_days": 0, "backtest_on_served_rows": None}}
    page = backtest_html(summary)
    _escaped(page)
    assert "Backtest bt1" in page and "alias champion" in page and "<td>0.7000</td>" in page and "not served" in page
    assert "2013-03-02: no features" in page


def test_replay_page():
    row = {"period": "2013-07", "rows": 29425, "live": 0.70, "frozen": 0.62, "calendar": 0.69, "mean_drift_share": 0.31,
           "dataset_drift_days": 9, "days_monitored": 31, "trainings_started": 1}
    summary = {"year": 2013, "first_champion": "1", "generated_at": "now", "policy": {"drift_days": 3},
               "mean_roc_auc": {"live": 0.7, "frozen": 0.62, "calendar": None},
               "live_beats_frozen_every_period": True, "live_mean_at_least_calendar": False,
               "by_period": [row, {**row, "period": "2013-08", "frozen": None}],
               "trainings": [{"version": "4", "started_on": "2013-07-03", "trigger": "monitoring",
                              "window": {"train_start": "2013-01-01", "holdout_end": "2013-07-02"}, "reason": HOSTILE,
                              "gate_passed": False, "gate_reasons": "worse than champion", "promoted": False}],
               "backtests": {"frozen": {"report": "reports/backtest/x/backtest.html", "model_version": "1"}}}
    page = replay_html(summary)
    _escaped(page)
    assert "<td>29,425</td>" in page and "<td>0.080</td>" in page and "calendar -" in page
    assert "rejected" in page and "<td>-</td>" in page and "<code>{\"drift_days\": 3}</code>" in page
