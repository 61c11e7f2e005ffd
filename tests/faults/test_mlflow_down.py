"""The MLflow server killed (SIGKILL) during train, evaluate and promote: the champion does not move, the step
exits with a retryable code (1: Airflow retries it with backoff; not 3, a rejection, nor 4, a skip: see
jobs/results.py and dags/common/operators.py), and once the same server is back its rerun completes.

The server is the local stack's `mlflow server` command over a copy of a real registry (SQLite) whose champion
jobs.train trained; the steps run as their CLIs, as Airflow runs them.
"""
from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from jobs.results import EXIT_REJECTED, EXIT_SKIPPED, EXIT_USAGE
from tests.crash import KILLED, finish, read_until, run_step, start_step, step_env
from tests.faults.services import mlflow_service

pytestmark = pytest.mark.faults

MODEL = "flight_delay"
TRAIN = ["--start", "2013-01-02", "--end", "2013-01-06", "--holdout-start", "2013-01-07", "--holdout-end", "2013-01-08",
         "--family", "sklearn_hgb", "--reason", "fault test"]


def _retryable(code: int, stderr: str, url: str) -> None:
    assert code not in (0, KILLED, EXIT_USAGE, EXIT_REJECTED, EXIT_SKIPPED), f"exit {code}, not retryable:\n{stderr}"
    assert url.split("//")[1] in stderr, f"the failure does not name the server {url}:\n{stderr}"


def _aliases(url: str) -> dict[str, str]:
    return dict(MlflowClient(url).get_registered_model(MODEL).aliases)


@pytest.mark.timeout(1500)
def test_mlflow_down_during_train_evaluate_and_promote(served_copy, tmp_path):
    lake, champion = served_copy["lake"], served_copy["version"]
    server, url = mlflow_service(tmp_path / "mlflow", served_copy["tracking_uri"])
    env = step_env(lake.root, MLFLOW_TRACKING_URI=url, PIPELINE__TRAINING__VALIDATION_DAYS="2")
    with server:
        before = _aliases(url)
        assert before["champion"] == champion

        # train: the server dies once the training set is built, before any run is logged.
        process = start_step("jobs.train", TRAIN, env)
        read_until(process, "fit rows")
        server.kill()
        code, err = finish(process)
        _retryable(code, err, url)
        server.start()
        assert _aliases(url) == before
        code, err = run_step("jobs.train", TRAIN, env)
        assert code == 0, err
        candidate = _aliases(url)["challenger"]
        assert candidate != champion and _aliases(url)["champion"] == champion

        # evaluate: the server dies when the model card is in the lake, while the gate's results go to MLflow.
        card = f"reports/training/{MODEL}/version={candidate}"
        process = start_step("jobs.evaluate", ["--version", candidate], env)
        deadline = time.monotonic() + 600
        while not lake.list(card) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()
        code, err = finish(process)
        _retryable(code, err, url)
        server.start()
        assert _aliases(url)["champion"] == champion
        assert "gate_passed" not in MlflowClient(url).get_model_version(MODEL, candidate).tags
        code, err = run_step("jobs.evaluate", ["--version", candidate], env)
        assert code == 0, err
        assert "gate_passed" in MlflowClient(url).get_model_version(MODEL, candidate).tags

        # promote: the server is down when the step starts; nothing moves until it is back.
        promote = ["promote", "--version", candidate, "--reason", "fault test"]
        server.kill()
        code, err = run_step("jobs.registry", promote, env)
        _retryable(code, err, url)
        server.start()
        assert _aliases(url)["champion"] == champion
        code, err = run_step("jobs.registry", promote, env)
        assert code == 0, err
        after = _aliases(url)
        assert (after["champion"], after["previous"]) == (candidate, champion)
