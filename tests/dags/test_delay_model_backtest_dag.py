"""Layer 2: delay_model_backtest: manual, submittable with its defaults, the form mapped onto jobs.backtest's CLI."""
from __future__ import annotations

import pytest

DAG_ID = "delay_model_backtest"


@pytest.fixture
def backtest(load_dag):
    return load_dag(DAG_ID, "local")


def test_manual_dag_with_one_step_after_the_wiring(backtest):
    from airflow.sdk.definitions.timetables.simple import NullTimetable

    from common.operators import SubprocessStepOperator

    assert isinstance(backtest.timetable, NullTimetable), "manual only"
    assert backtest.max_active_runs == 1 and not backtest.catchup
    assert {t.task_id: set(t.upstream_task_ids) for t in backtest.tasks} == {"backtest_arguments": set(),
                                                                             "backtest": {"backtest_arguments"}}
    step = backtest.get_task("backtest")
    assert isinstance(step, SubprocessStepOperator) and step.step == "backtest"


def test_the_form_submits_with_its_defaults(backtest):
    resolved = backtest.params.validate()
    assert resolved["alias"] == "champion" and resolved["version"] is None and resolved["start"] is None


@pytest.mark.parametrize(("params", "expected"), [
    ({"alias": "champion"}, ["--alias", "champion"]),
    ({"alias": "champion", "version": 3, "start": "2013-03-01", "end": "2013-03-31"},
     ["--version", "3", "--start", "2013-03-01", "--end", "2013-03-31"]),
    ({"alias": "champion", "version": 3, "train_start": "2013-01-01", "train_end": "2013-01-31",
      "family": "sklearn_hgb", "start": "2013-02-01", "backtest_id": "frozen-january"},
     ["--family", "sklearn_hgb", "--train-start", "2013-01-01", "--train-end", "2013-01-31", "--start", "2013-02-01",
      "--id", "frozen-january"]),
], ids=["defaults", "version-and-window", "training-window-first"])
def test_the_form_becomes_the_steps_arguments(backtest, params, expected):
    from jobs.backtest import build_parser

    arguments = backtest.get_task("backtest_arguments").python_callable(params=params, run_id="manual__1")
    assert arguments == [*expected, "--reason", f"{DAG_ID} run manual__1"]
    build_parser().parse_args(arguments)  # the CLI accepts what the DAG passes


def test_production_runs_the_backtest_in_a_pod(load_dag):
    from common.pod_operator import PodStepOperator

    step = load_dag(DAG_ID, "production").get_task("backtest")
    assert isinstance(step, PodStepOperator) and step.cmds == ["python", "-m", "jobs.backtest"]
