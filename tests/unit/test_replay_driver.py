"""The replay driver's refusals (scripts/replay/), before anything starts: a window the source cannot
play, a second replay while one runs, a state file of another window; and its resumable state."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from scripts.replay import (REPO_ROOT, ReplayError, ReplayState, check_window, main, replay_env, replay_lock,
                            report_months)

D = dt.date


@pytest.mark.parametrize(("first", "last", "days", "message"), [
    (D(2012, 12, 1), D(2013, 3, 1), 31, "the start 2012-12-01 is outside the source (2013-01-01..2013-12-31)"),
    (D(2013, 1, 1), D(2014, 1, 5), 31, "the end 2014-01-05 is outside the source"),
    (D(2013, 3, 1), D(2013, 2, 1), 14, "the end 2013-02-01 is before the start 2013-03-01"),
    (D(2013, 1, 1), D(2013, 3, 1), 14, "--first-model-days 14: the first model needs at least 15 days "
                                       "(7 held out, 7 for early stopping, one to fit)"),
    (D(2013, 1, 1), D(2013, 1, 20), 31, "leaves no day after the first model's 31 days"),
])
def test_a_window_the_source_cannot_play_is_refused_naming_the_problem(first, last, days, message):
    with pytest.raises(ReplayError, match="bad replay window: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        check_window(first, last, days)


def test_a_good_window_passes():
    check_window(D(2013, 1, 1), D(2013, 12, 31), 31)


def test_a_second_replay_is_refused_while_one_runs(tmp_path):
    with replay_lock(tmp_path):
        # Another process (the lock is per open file description, as a second `make replay` holds it).
        other = subprocess.run(
            [sys.executable, "-c", "from pathlib import Path; from scripts.replay import replay_lock\n"
                                   f"with replay_lock(Path({str(tmp_path)!r})): pass"],
            cwd=REPO_ROOT, capture_output=True, text=True)
        assert other.returncode != 0 and "another replay is running (pid" in other.stderr
    with replay_lock(tmp_path):  # released: the next one may start
        pass


def test_the_state_of_another_window_is_refused_before_the_stack_starts(tmp_path, capsys):
    ReplayState("2013-01-01", "2013-06-30", 31, next_day="2013-03-02").save(tmp_path / "state.json")
    assert main(["--home", str(tmp_path), "--end", "2013-12-31"]) == 1
    assert "holds a replay of 2013-01-01..2013-06-30 (first model 31 days); remove" in capsys.readouterr().err


def test_state_round_trips_and_the_clock_settings_bound_the_dags(tmp_path):
    state = ReplayState("2013-04-01", "2013-05-15", 14, next_day="2013-04-20",
                        days={"2013-04-15": {"wall_s": 12.5}})
    state.save(tmp_path / "state.json")
    assert ReplayState.load(tmp_path / "state.json") == state
    env = replay_env(D(2013, 4, 1), D(2013, 5, 15))
    assert env["PIPELINE__AIRFLOW__START_DATE"] == env["PIPELINE__DATA__FIRST_FLIGHT_DATE"] == "2013-04-01"
    assert env["PIPELINE__AIRFLOW__END_DATE"] == "2013-05-16"  # the run that ingests the last day's outcomes
    assert not any("START_DATES" in key for key in env)
    served = replay_env(D(2013, 4, 1), D(2013, 5, 15), first_served=D(2013, 4, 15))
    assert served["PIPELINE__AIRFLOW__START_DATES__DELAY_MODEL_MONITORING"] == "2013-04-15"  # not the first model's days


def test_the_evidence_compares_the_months_after_the_first_models_next():
    assert report_months(ReplayState("2013-01-01", "2013-12-31", 31)) == (3, 12)
    assert report_months(ReplayState("2013-03-15", "2013-06-30", 18)) == (5, 6)
    assert report_months(ReplayState("2013-01-01", "2013-02-20", 31)) is None
