"""Notifications through a real Airflow to a real SMTP receiver on 127.0.0.1 (aiosmtpd).

The Airflow of tests/integration/airflow_test.py, with `notifications:` enabled by the
environment and the SMTP connection given by reference (AIRFLOW_CONN_SMTP_NOTIFICATIONS), as
a deployment gives it: a failing task mails its DAG, task, date, reason and log link; a
delivery with bad rows and a rejected delivery mail their quarantine; a scoring run that
misses its deadline mails from Airflow's deadline machinery (the scheduler's and triggerer's
own code, driven step by step by tests/integration/deadline_probe.py).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.upstream.publish import publish
from tests.integration.stack import free_ports
from tests.integration.airflow_test import AIRFLOW, AirflowRunner
from tests.smtp_inbox import start_inbox

pytestmark = pytest.mark.integration

BASE_URL = "http://airflow.pipeline.test:8080"
TO = "oncall@pipeline.test"
DEADLINE_PROBE = Path(__file__).with_name("deadline_probe.py")


@pytest.fixture(scope="module")
def inbox():
    inbox, controller = start_inbox()
    yield inbox
    controller.stop()


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, inbox) -> AirflowRunner:
    home = tmp_path_factory.mktemp("airflow_notify")
    return AirflowRunner(
        home, f"sqlite:///{home}/airflow.db",
        PIPELINE__NOTIFICATIONS__ENABLED="true",
        PIPELINE__NOTIFICATIONS__TO=f"[{TO}]",
        PIPELINE__NOTIFICATIONS__CONN_ID="smtp_notifications",
        AIRFLOW_CONN_SMTP_NOTIFICATIONS=inbox.connection_json(),
        AIRFLOW__API__BASE_URL=BASE_URL,
        # A failure is told once, when it is final: no retries to wait for here.
        PIPELINE__AIRFLOW__RETRIES="0",
        # Due at the start of the flight date: a scoring run for today has missed it already.
        PIPELINE__NOTIFICATIONS__PREDICTIONS_DEADLINE="00:00",
        # Monitoring gives up on a day's predictions after 5 s (the ingest tests publish before they run).
        PIPELINE__SENSORS__TIMEOUT_S="5",
        # No MLflow server here, whatever else runs on this machine (a demo's or a replay's on the default port).
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_ports(1)[0]}",
    )


def _new_mails(inbox, before: int, count: int):
    mails = inbox.wait_for(before + count)[before:]
    assert len(mails) >= count, f"expected {count} new mail(s), got {[m.subject for m in mails]}"
    return mails


def test_a_failed_task_mails_its_dag_task_date_reason_and_log_link(airflow, inbox):
    before = len(inbox.mails)
    # An empty lake: check_request refuses the request (no labelled day), a final failure.
    state, tasks, out = airflow.dags_test("delay_model_training", "2013-02-04T06:00:00+00:00")
    assert state == "failed" and tasks["check_request"]["state"] == "failed", out[-3000:]
    [mail] = _new_mails(inbox, before, 1)
    assert mail.to == [TO] and mail.sender == "airflow@pipeline.test"
    assert mail.subject.startswith("[flight-delay] delay_model_training.check_request failed")
    assert "2013-02-04T06:00:00+00:00" in mail.html  # the logical date
    assert "no labelled day in the lake yet" in mail.html  # the reason
    run_id = airflow.last_result["run_id"]
    from urllib.parse import quote

    assert f"{BASE_URL}/dags/delay_model_training/runs/{quote(run_id, safe='')}/tasks/check_request" in mail.html


def test_a_quarantined_delivery_mails_its_counts_and_a_rejected_one_its_checks(airflow, inbox):
    """Run D=2013-01-01: the schedule has 3 bad rows (set aside, the rest published), the forecast
    has a column missing (the file is rejected into quarantine, the task fails)."""
    lake = airflow.lake
    publish(lake, dt.date(2013, 1, 1), feeds=("schedule",), corrupt_kind="bad_values", corrupt_rows=3)
    publish(lake, dt.date(2013, 1, 1), feeds=("weather",), corrupt_kind="missing_column")
    before = len(inbox.mails)
    state, tasks, out = airflow.dags_test("flights_ingest", "2013-01-01")
    assert tasks["schedule.validate_and_publish"]["state"] == "success", out[-3000:]
    assert tasks["weather.validate_and_publish"]["state"] == "failed", out[-3000:]
    mails = {mail.subject: mail for mail in _new_mails(inbox, before, 2)}
    [rows] = [m for s, m in mails.items() if "3 row(s) quarantined: schedule 2013-01-01" in s]
    assert "3 of " in rows.html and "quarantine/schedule/date=2013-01-01" in rows.html
    assert "/dags/flights_ingest/runs/" in rows.html and "/tasks/schedule.validate_and_publish" in rows.html
    [rejected] = [m for s, m in mails.items() if "weather.validate_and_publish rejected a delivery" in s]
    assert "2013-01-01" in rejected.html and "StepRejected" in rejected.html
    assert f"{BASE_URL}/dags/flights_ingest/runs/" in rejected.html


def test_predictions_that_never_came_are_mailed_by_the_daily_monitoring_run(airflow, inbox):
    """No scoring run exists for D (its features never came), so no deadline can fire; the monitoring run of D,
    on its clock, waits for the predictions, gives up and mails that they are missing."""
    before = len(inbox.mails)
    state, tasks, out = airflow.dags_test("delay_model_monitoring", "2013-01-03")
    assert tasks["wait_for_predictions"]["state"] == "skipped", out[-3000:]
    # Two mails: this one, and `monitor` failing (no MLflow server in this test: the champion cannot be read).
    mails = _new_mails(inbox, before, 2)
    assert tasks["monitor"]["state"] == "failed" and any(".monitor failed" in m.subject for m in mails)
    [mail] = [m for m in mails if "no predictions" in m.subject]
    assert mail.subject.startswith("[flight-delay] no predictions for flight date 2013-01-03"), mail.subject
    assert "predictions/flight_delay/date=2013-01-03" in mail.html and "flights_features" in mail.html
    assert f"{BASE_URL}/dags/flights_batch_scoring/runs" in mail.html
    assert "/tasks/wait_for_predictions" in mail.html


def test_a_missed_predictions_deadline_mails_from_the_triggerer(airflow, inbox):
    """A scoring run for today has its deadline at today 00:00 + predictions_deadline ("00:00" here: passed,
    rendered in the mail); a run for a 2013 flight date (a replay) gets none."""
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    before = len(inbox.mails)
    proc = subprocess.run([sys.executable, str(DEADLINE_PROBE), today, "2013-03-01"], env=airflow.env,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DEADLINE_PROBE ")]
    assert lines, (proc.stdout + proc.stderr)[-4000:]
    result = json.loads(lines[-1].split(" ", 1)[1])
    assert result["runs"] == {today: [f"{today}T00:00:00+00:00"], "2013-03-01": []}
    assert result["missed"] == 1
    assert [event["state"] for event in result["events"]] == ["running", "success"], result["events"]
    [mail] = _new_mails(inbox, before, 1)
    assert mail.subject.startswith(f"[flight-delay] predictions late: flights_batch_scoring {today}")
    assert mail.to == [TO]
    assert f"<td>asset_triggered__{today}</td>" in mail.html
    assert f"{BASE_URL}/dags/flights_batch_scoring/runs/asset_triggered__{today}" in mail.html
    assert "start of the flight date + 00:00" in mail.html


def test_a_running_scheduler_and_triggerer_mail_a_missed_deadline(airflow, inbox, tmp_path):
    """The same alert with nothing driven by hand: `airflow scheduler` finds the missed deadline and queues
    its callback, `airflow triggerer` runs it (every DAG paused: no task runs)."""
    flight_date = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    proc = subprocess.run([sys.executable, str(DEADLINE_PROBE), "--create-only", flight_date], env=airflow.env,
                          capture_output=True, text=True, timeout=300)
    assert f'"{flight_date}": ["{flight_date}T00:00:00+00:00"]' in proc.stdout, (proc.stdout + proc.stderr)[-4000:]
    before = len(inbox.mails)
    started = []
    try:
        for component in ("scheduler", "triggerer"):
            log = (tmp_path / f"{component}.log").open("w")
            started.append(subprocess.Popen([AIRFLOW, component], env=airflow.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True))
        mails = inbox.wait_for(before + 1, timeout_s=150)[before:]
        # (Exactly one: the deadline driven by hand in the test above is finished and is not run again.)
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log")))
    assert mails, f"no mail from the deadline of {flight_date}:\n{logs}"
    assert len(inbox.wait_for(before + 2, timeout_s=1)) == before + 1, [m.subject for m in inbox.mails[before:]]
    assert mails[0].subject.startswith(f"[flight-delay] predictions late: flights_batch_scoring {flight_date}")
    assert f"{BASE_URL}/dags/flights_batch_scoring/runs/asset_triggered__{flight_date}" in mails[0].html
