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


class _Clock:
    """The clock's loop with the stack taken out: deliveries and closed days are recorded."""

    def __new__(cls, state, state_file, interrupt_at=None):
        from scripts.replay import Replay

        class Recorded(Replay):
            def deliver(self, **conf):
                events.append(("deliver", conf["as_of"], conf["days"]))

            def close_day(self, day, started):
                if day == interrupt_at:
                    raise KeyboardInterrupt
                events.append(("close", day.isoformat()))
                return {"wall_s": 1.0, "decision": None}

        events: list[tuple] = []
        replay = Recorded(client=None, state=state, state_file=state_file, timeout=1)
        replay.events = events
        return replay


def test_the_clock_keeps_a_stretch_in_flight_and_resumes_without_redelivering(tmp_path, capsys):
    state_file = tmp_path / "state.json"
    state = ReplayState("2013-02-01", "2013-02-20", 14, next_day="2013-02-15")
    clock = _Clock(state, state_file, interrupt_at=D(2013, 2, 18))
    with pytest.raises(KeyboardInterrupt):
        clock.loop(stretch=3)
    # Feb 15-17 first; as soon as the day closed is less than a stretch behind the frontier, the next stretch.
    assert clock.events == [("deliver", "2013-02-17", 3), ("close", "2013-02-15"),
                            ("deliver", "2013-02-20", 3), ("close", "2013-02-16"), ("close", "2013-02-17")]
    saved = ReplayState.load(state_file)
    assert (saved.next_day, saved.delivered_to) == ("2013-02-18", "2013-02-20")
    resumed = _Clock(saved, state_file)
    resumed.loop(stretch=3)  # nothing delivered twice; the window ends with the outcomes of Feb 20, on Feb 21
    assert resumed.events == [("close", "2013-02-18"), ("deliver", "2013-02-21", 1),
                              ("close", "2013-02-19"), ("close", "2013-02-20"), ("close", "2013-02-21")]
    day_at_a_time = _Clock(ReplayState("2013-02-01", "2013-02-20", 14, next_day="2013-02-19"), tmp_path / "one.json")
    day_at_a_time.loop(stretch=1)
    assert day_at_a_time.events == [("deliver", "2013-02-19", 1), ("close", "2013-02-19"),
                                    ("deliver", "2013-02-20", 1), ("close", "2013-02-20"),
                                    ("deliver", "2013-02-21", 1), ("close", "2013-02-21")]


def test_the_gates_verdict_is_one_sentence_with_its_reasons():
    from scripts.replay.clock import gate_sentence

    rejected = {"passed": False, "model_version": "1", "reasons": ["ROC AUC 0.5233 < floor 0.600"]}
    assert gate_sentence(rejected) == "the gate rejected v1: ROC AUC 0.5233 < floor 0.600"
    passed = {"passed": True, "model_version": "2", "reasons": ["a", "b", "c", "d"]}
    assert gate_sentence(passed, 3) == "the gate passed v2: a; b; c"
    assert gate_sentence(None) is None and gate_sentence({}) is None
