"""A job's request is one typed object with one validation; the DAG hands the CLI its argv, the CLI reads it back."""
from __future__ import annotations

import argparse
import datetime as dt

import pytest

from jobs.settings import get_settings
from jobs.train import TrainRequest, build_parser
from jobs.training_set import Windows, add_window_arguments

WINDOWS = Windows(dt.date(2013, 1, 1), dt.date(2013, 1, 24), dt.date(2013, 1, 25), dt.date(2013, 1, 31))
PARAMS = {"family": "torch_mlp", "epochs": 7, "batch_size": 512, "learning_rate": 0.0015, "seed": 3, "use_gpu": False,
          "reason": "drift 2013-07-03: share 0.41 over 3 days"}


def test_windows_argv_reads_back_as_the_same_windows():
    parser = argparse.ArgumentParser()
    add_window_arguments(parser)
    args = parser.parse_args(WINDOWS.argv())
    assert Windows(args.train_start, args.train_end, args.holdout_start, args.holdout_end) == WINDOWS


@pytest.mark.parametrize("run_id", [None, "scheduled__2013-02-04T06:00:00+00:00"])
def test_train_request_argv_reads_back_as_the_same_request(run_id):
    request = TrainRequest.from_params(WINDOWS, PARAMS, airflow_dag_id="delay_model_training", airflow_run_id=run_id)
    assert TrainRequest.from_args(build_parser(get_settings()).parse_args(request.argv())) == request
    assert ("--no-gpu" in request.argv()) is True and ("--airflow-run-id" in request.argv()) == bool(run_id)


def test_an_empty_reason_is_a_manual_run():
    assert TrainRequest.from_params(WINDOWS, {**PARAMS, "reason": ""}).reason == "manual"


def test_every_problem_of_a_request_is_named_at_once():
    with pytest.raises(ValueError) as refused:
        TrainRequest.from_params(WINDOWS, {**PARAMS, "family": "xgboost", "epochs": 0, "learning_rate": 1.5, "seed": -1})
    message = str(refused.value)
    for named in ("family 'xgboost'", "epochs must be positive", "learning_rate must be in (0, 1)", "seed must not"):
        assert named in message


def test_the_cli_refuses_what_the_request_refuses(capsys):
    from jobs.train import main

    argv = TrainRequest.from_params(WINDOWS, PARAMS).argv()
    argv[argv.index("--batch-size") + 1] = "0"
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "batch_size must be positive (got 0)" in capsys.readouterr().err
