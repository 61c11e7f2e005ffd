"""jobs.train's request checks and validation split (the training itself: tests/unit/test_model.py and the
integration test through Airflow and MLflow)."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from jobs.train import main, split_validation
from jobs.feeds import LABEL
from jobs.training_set import TrainingSetError

WINDOW = ["--start", "2013-01-01", "--end", "2013-02-28", "--holdout-start", "2013-03-01", "--holdout-end",
          "2013-03-07"]


@pytest.mark.parametrize(("args", "message"), [
    (["--start", "2013-02-01", "--end", "2013-01-01", "--holdout-start", "2013-03-01", "--holdout-end",
      "2013-03-07"], "training window ends (2013-01-01) before it starts (2013-02-01)"),
    (["--start", "2013-01-01", "--end", "2013-03-03", "--holdout-start", "2013-03-01", "--holdout-end",
      "2013-03-07"], "overlaps training"),
    ([*WINDOW, "--epochs", "0"], "epochs must be positive (got 0)"),
    ([*WINDOW, "--learning-rate", "2"], "learning_rate must be in (0, 1) (got 2.0)"),
    ([*WINDOW, "--family", "xgboost"], "invalid choice: 'xgboost'"),
])
def test_bad_requests_exit_2_naming_the_problem(args, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def _days(first: dt.date, n: int, rows: int = 10) -> pd.DataFrame:
    dates = [first + dt.timedelta(days=i) for i in range(n) for _ in range(rows)]
    return pd.DataFrame({"flight_date": dates, LABEL: [i % 2 for i in range(len(dates))]})


def test_the_last_days_of_the_window_validate():
    fit, valid = split_validation(_days(dt.date(2013, 1, 1), 20), validation_days=7)
    assert fit["flight_date"].max() == dt.date(2013, 1, 13)
    assert sorted(set(valid["flight_date"])) == [dt.date(2013, 1, d) for d in range(14, 21)]


def test_a_window_too_short_to_validate_is_rejected():
    with pytest.raises(TrainingSetError, match="too short to hold out 7 validation days"):
        split_validation(_days(dt.date(2013, 1, 1), 5), validation_days=7)


def test_mlflow_unreachable_fails_naming_the_tracking_uri_before_any_work(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    assert main(WINDOW) == 1  # not 3: Airflow retries it with backoff
    err = capsys.readouterr().err
    assert "MLflow tracking server http://127.0.0.1:9 is unreachable" in err
    assert not (tmp_path / "lake").exists(), "nothing was read or written before MLflow answered"


def test_the_fits_take_the_settings_cpu_threads(served_model):
    """The served model's training (local settings) ran its HGB fit with `training.cpu_threads` threads."""
    from mlflow import MlflowClient

    threads = served_model["settings"].training.cpu_threads
    assert threads == 1, "the local overlay gives a training one thread (bench/bench_training_threads.py)"
    params = MlflowClient(served_model["tracking_uri"]).get_run(served_model["run_id"]).data.params
    assert params["hgb.num_threads"] == str(threads)


def test_threads_are_the_trainer_pods_cpu_request_in_production():
    from jobs.settings import load_settings

    settings = load_settings("production")
    assert settings.training.cpu_threads == int(settings.runner.resources["trainer"].requests["cpu"])
