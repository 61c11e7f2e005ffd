"""Layer 4: the local runner, run for real. A step's exit code and STEP_RESULT lines become Airflow outcomes.

SubprocessStepOperator starts a real child process; only the command changes
(ScriptStep), to a few lines of Python that speak the step contract through
jobs.results itself: exit 0 -> results (XCom) and Asset events, exit 3 ->
StepRejected (fail, no retry), exit 4 -> skipped with the step's reason, anything else -> AirflowException (retried).

With PIPELINE_WARM_SOCKET naming a real warm runner (jobs/warm.py), real steps run there
with the same outcomes, and on_kill stops them; with a dead socket the operator falls back
to a fresh subprocess.
"""
from __future__ import annotations

import datetime as dt
import json
import socket
import sys
import threading
import time
from typing import Any

import pytest

from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.sdk.execution_time.comms import SucceedTask
from airflow.sdk.execution_time.context import OutletEventAccessors
from airflow.sdk.execution_time.task_runner import _build_asset_profiles, _serialize_outlet_events

from jobs.warm import WARM_SOCKET_ENV, run_step
from tests.integration.stack import warm_runner

# The child: prints like a step, reports each result with jobs.results.emit_result, exits as told.
STEP = """
import json, os, sys, time
from jobs.results import emit_result
results, code, seconds = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
print("validating landing/flights/2013-02-28.csv", flush=True)
time.sleep(seconds)
for result in results:
    emit_result({**result, "cwd": os.getcwd(), "flag": os.environ.get("STEP_FLAG")})
if code == 4:
    print("SKIPPED no flight_delay@champion yet: nothing serves predictions", flush=True)
if code == 3:
    print("ERROR flights 2013-02-28 rejected: expect_column_values_to_be_unique(flight): 12 duplicates", flush=True)
elif code:
    print("Traceback (most recent call last): boom", flush=True)
sys.exit(code)
"""

PASSED = {
    "feed": "flights", "ds": "2013-02-28", "status": "passed", "rows": 912, "quarantined_rows": 0,
    "raw_uri": "file:///lake/raw/flights/date=2013-02-28", "quarantine_uri": None, "warnings": [],
}
WITH_QUARANTINE = {
    "feed": "schedule", "ds": "2013-02-28", "status": "passed_with_quarantined_rows", "rows": 900,
    "quarantined_rows": 3, "raw_uri": "file:///lake/raw/schedule/date=2013-02-28",
    "quarantine_uri": "file:///lake/quarantine/schedule/date=2013-02-28", "warnings": ["3 rows quarantined"],
}
REJECTED = {"feed": "weather", "ds": "2013-02-28", "status": "rejected", "raw_uri": None, "warnings": []}


@pytest.fixture
def ingest(load_dag_module, tmp_path, monkeypatch):
    """(ScriptStep class, the flights_ingest module): asset_events and assets are the DAG's own."""
    from common.operators import SubprocessStepOperator

    # jobs.results also writes the pod's XCom file when its folder exists: keep it off this machine's /airflow.
    monkeypatch.setenv("PIPELINE_XCOM_FILE", str(tmp_path / "no-such-dir" / "return.json"))
    monkeypatch.delenv(WARM_SOCKET_ENV, raising=False)  # a fresh subprocess unless a test says otherwise
    module = load_dag_module("flights_ingest", "local")

    class ScriptStep(SubprocessStepOperator):
        def __init__(self, *, results: list[dict[str, Any]], exit_code: int, seconds: float = 0.0, **kwargs: Any):
            super().__init__(step="ingest", asset_events=module.raw_asset_event, **kwargs)
            self.script_args = [json.dumps(results), str(exit_code), str(seconds)]

        def command(self) -> list[str]:
            return [sys.executable, "-c", STEP, *self.script_args]

    return ScriptStep, module


def run(operator) -> tuple[Any, dict[str, Any]]:
    context = {"outlet_events": OutletEventAccessors()}
    return operator.execute(context), context


def test_exit_0_returns_the_results_and_emits_asset_events(ingest):
    from common.config import REPO_ROOT

    ScriptStep, module = ingest
    operator = ScriptStep(
        task_id="validate_and_publish", results=[PASSED, WITH_QUARANTINE, REJECTED], exit_code=0,
        env={"STEP_FLAG": "on"}, outlets=[module.raw_asset(feed) for feed in ("flights", "schedule", "weather")],
    )
    results, context = run(operator)

    assert [result["status"] for result in results] == ["passed", "passed_with_quarantined_rows", "rejected"]
    assert results[0] == {**PASSED, "cwd": str(REPO_ROOT), "flag": "on"}, "parsed back exactly, run from the repo root"

    message = SucceedTask(  # what the worker sends the API server: validates the events' shape
        end_date=dt.datetime.now(dt.timezone.utc),
        task_outlets=list(_build_asset_profiles(operator.outlets)),
        outlet_events=list(_serialize_outlet_events(context["outlet_events"])),
    )
    events = {event["dest_asset_key"]["name"]: event for event in message.outlet_events}
    assert sorted(events) == ["raw_flights", "raw_schedule"], "no event for the rejected feed"
    assert events["raw_flights"]["partition_key"] == "2013-02-28"
    assert events["raw_flights"]["dest_asset_key"]["uri"] == module.raw_asset("flights").uri
    assert events["raw_schedule"]["extra"]["quarantined_rows"] == 3
    assert events["raw_schedule"]["extra"]["warnings"] == ["3 rows quarantined"]


def test_exit_3_is_a_rejection_that_is_not_retried(ingest):
    from common.operators import StepRejected

    ScriptStep, _ = ingest
    operator = ScriptStep(task_id="validate_and_publish", results=[REJECTED], exit_code=3)
    with pytest.raises(StepRejected) as caught:
        run(operator)
    assert isinstance(caught.value, AirflowFailException)
    assert "jobs.ingest rejected its input" in str(caught.value)
    assert "expect_column_values_to_be_unique(flight): 12 duplicates" in str(caught.value), "names the failed check"


def test_exit_4_skips_the_task_with_the_steps_reason(ingest):
    from airflow.sdk.exceptions import AirflowSkipException

    ScriptStep, _ = ingest
    operator = ScriptStep(task_id="validate_and_publish", results=[], exit_code=4)
    with pytest.raises(AirflowSkipException) as caught:
        run(operator)
    assert str(caught.value) == ("jobs.ingest: nothing to do: no flight_delay@champion yet: "
                                 "nothing serves predictions")


@pytest.mark.parametrize("exit_code", [1, 2])
def test_other_exit_codes_fail_and_retry(ingest, exit_code):
    from common.operators import StepRejected

    ScriptStep, _ = ingest
    operator = ScriptStep(task_id="validate_and_publish", results=[], exit_code=exit_code)
    with pytest.raises(AirflowException) as caught:
        run(operator)
    assert not isinstance(caught.value, (AirflowFailException, StepRejected))
    assert f"exited with code {exit_code}" in str(caught.value)
    assert "Traceback" in str(caught.value)


def test_on_kill_stops_the_step(ingest):
    ScriptStep, _ = ingest
    operator = ScriptStep(task_id="validate_and_publish", results=[PASSED], exit_code=0, seconds=60)
    outcome: dict[str, BaseException | Any] = {}

    def execute() -> None:
        try:
            outcome["result"] = run(operator)
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            outcome["error"] = exc

    worker = threading.Thread(target=execute)
    worker.start()
    deadline = time.monotonic() + 30
    while operator._process is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert operator._process is not None, "the step never started"
    operator.on_kill()
    worker.join(timeout=30)
    assert not worker.is_alive(), "on_kill did not stop the step"
    assert isinstance(outcome.get("error"), AirflowException), outcome
    assert "exited with code -15" in str(outcome["error"])


# -- the warm runner ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def warm_socket(tmp_path_factory):
    """A real warm runner (jobs/warm.py) for this module's tests."""
    with warm_runner(tmp_path_factory.mktemp("warm")) as socket_path:
        yield socket_path


@pytest.fixture
def landed_lake(warm_socket, tmp_path) -> str:
    """A lake where the schedule of 2013-01-01 has landed (published by the warm runner)."""
    lake = str(tmp_path / "lake")
    code = run_step(warm_socket, "publish", ["--ds", "2013-01-01", "--feed", "schedule"], env={"LAKE_ROOT": lake},
                    on_line=lambda line: None)
    assert code == 0
    return lake


def task_log(capsys) -> list[str]:
    """The task log's lines so far (Airflow's structlog prints them on stdout)."""
    return capsys.readouterr().out.splitlines()


def which_runner(lines: list[str]) -> list[str]:
    return [line for line in lines if "] Running " in line or "instead" in line]


def test_with_a_warm_runner_a_real_step_returns_its_results_and_asset_events(
        ingest, warm_socket, landed_lake, monkeypatch, capsys):
    from common.operators import SubprocessStepOperator

    _, module = ingest
    monkeypatch.setenv(WARM_SOCKET_ENV, str(warm_socket))
    operator = SubprocessStepOperator(
        task_id="validate_and_publish", step="ingest", arguments=["--ds", "2013-01-01", "--feed", "schedule"],
        env={"LAKE_ROOT": landed_lake}, asset_events=module.raw_asset_event, outlets=[module.raw_asset("schedule")],
    )
    results, context = run(operator)

    lines = task_log(capsys)
    [running] = which_runner(lines)
    assert f"Running {sys.executable} -m jobs.ingest --ds 2013-01-01 --feed schedule (warm runner {warm_socket})" \
        in running
    assert [(r["feed"], r["status"], r["rows"]) for r in results] == [("schedule", "passed", 842)]
    assert results[0]["raw_uri"].startswith(landed_lake), "the step read LAKE_ROOT from the operator's env"
    events = list(_serialize_outlet_events(context["outlet_events"]))
    assert [(e["dest_asset_key"]["name"], e["partition_key"], e["extra"]["rows"]) for e in events] == [
        ("raw_schedule", "2013-01-01", 842)]
    assert any("[info     ] INFO jobs.ingest: schedule 2013-01-01 passed" in line for line in lines), \
        "each line of the step is in the task log, at its level"


def test_with_a_warm_runner_a_rejection_is_not_retried(ingest, warm_socket, tmp_path, monkeypatch):
    from common.operators import StepRejected, SubprocessStepOperator

    lake = str(tmp_path / "lake")
    assert run_step(warm_socket, "publish", ["--ds", "2013-01-01", "--feed", "schedule", "--corrupt", "missing_column"],
                    env={"LAKE_ROOT": lake}, on_line=lambda line: None) == 0
    monkeypatch.setenv(WARM_SOCKET_ENV, str(warm_socket))
    operator = SubprocessStepOperator(task_id="validate_and_publish", step="ingest",
                                      arguments=["--ds", "2013-01-01", "--feed", "schedule"], env={"LAKE_ROOT": lake})
    with pytest.raises(StepRejected) as caught:
        run(operator)
    assert "jobs.ingest rejected its input" in str(caught.value)
    assert "rejected" in str(caught.value).split("\n", 1)[1], "names the failed check"


def test_with_a_warm_runner_on_kill_stops_the_step(ingest, warm_socket, tmp_path, monkeypatch):
    from common.operators import SubprocessStepOperator

    monkeypatch.setenv(WARM_SOCKET_ENV, str(warm_socket))
    operator = SubprocessStepOperator(task_id="publish", step="publish", arguments=["--ds", "2013-01-01", "--days", "365"],
                                      env={"LAKE_ROOT": str(tmp_path / "lake")})
    outcome = _run_in_thread(operator)
    deadline = time.monotonic() + 60
    while operator._warm_pid is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert operator._warm_pid is not None, "the step never started"
    operator.on_kill()
    outcome["thread"].join(timeout=30)
    assert not outcome["thread"].is_alive(), "on_kill did not stop the step"
    assert isinstance(outcome.get("error"), AirflowException), outcome
    assert "exited with code -15" in str(outcome["error"])
    assert operator._warm_pid is None, "forgotten once ended: its pid may be reused"


@pytest.mark.parametrize("dead", ["missing", "stale"])
def test_a_dead_warm_socket_falls_back_to_a_fresh_subprocess(ingest, tmp_path, monkeypatch, capsys, dead):
    ScriptStep, _ = ingest
    path = tmp_path / "warm.sock"
    if dead == "stale":  # a socket file that nothing listens on any more (a runner that died)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
            gone.bind(str(path))
    monkeypatch.setenv(WARM_SOCKET_ENV, str(path))
    operator = ScriptStep(task_id="validate_and_publish", results=[PASSED], exit_code=0)
    results, _ = run(operator)
    assert [r["status"] for r in results] == ["passed"]
    log = capsys.readouterr().out  # (ScriptStep's command is a script of several lines)
    tried, gave_up, ran = (log.index(f"(warm runner {path})"), log.index(f"[warning  ] no warm runner at {path}"),
                           log.rindex("(fresh subprocess)"))
    assert tried < gave_up < ran
    assert "running a fresh subprocess instead" in log


def _run_in_thread(operator) -> dict[str, Any]:
    outcome: dict[str, Any] = {}

    def execute() -> None:
        try:
            outcome["result"] = run(operator)
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=execute)
    outcome["thread"].start()
    return outcome
