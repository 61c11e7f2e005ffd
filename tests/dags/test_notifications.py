"""Notifications: the settings' validation, what each DAG carries, the messages, a real send.

The DAG files are executed as the dag-processor would, with `notifications:` set by the
environment as a deployment sets it; the messages are built from Airflow's own task contexts
(tests/dags/conftest.py `runtime_ti`); sending goes through the provider's SmtpNotifier to a
real SMTP receiver on 127.0.0.1. Through a real Airflow run: tests/integration/test_notifications.py.
"""
from __future__ import annotations

import datetime as dt

import pytest

from jobs.settings import SettingsError, load_settings
from tests.smtp_inbox import free_port, start_inbox

UTC = dt.timezone.utc
TO = "oncall@pipeline.test"
ENABLED = {"PIPELINE__NOTIFICATIONS__ENABLED": "true", "PIPELINE__NOTIFICATIONS__TO": f"[{TO}]"}
DAG_IDS = ("delay_model_backtest", "delay_model_monitoring", "delay_model_rollback", "delay_model_training",
           "flights_batch_scoring", "flights_features", "flights_ingest", "replay_publisher")
# The task whose success marks each event.
EVENT_TASKS = {
    ("delay_model_training", "not_promoted"): "gate_rejected",
    ("delay_model_training", "promote"): "promoted",
    ("delay_model_monitoring", "trigger_retraining"): "drift_retraining",
    ("delay_model_rollback", "rollback"): "rolled_back",
    **{("flights_ingest", f"{feed}.validate_and_publish"): "quarantine" for feed in ("schedule", "weather", "flights")},
}
BASE_URL = "http://airflow.pipeline.test:8080"


@pytest.fixture
def inbox():
    inbox, controller = start_inbox()
    yield inbox
    controller.stop()


# --- settings ---

@pytest.mark.parametrize("variable,value,expected", [
    ("TO", "[oncall]", ["notifications.to.0", "'oncall' is not an email address"]),
    ("TO", "[ops@corp.example, 'Ops <ops@corp.example>']", ["notifications.to.1", "is not an email address"]),
    ("FROM_EMAIL", "airflow at corp", ["notifications.from_email", "is not an email address"]),
    ("EVENTS", "[task_failed, gate_rejcted]", ["notifications.events.1", "'gate_rejected'"]),
    ("PREDICTIONS_DEADLINE", "5am", ["notifications.predictions_deadline"]),
    ("CONN_ID", "smtp default", ["notifications.conn_id"]),
    ("PASSWORD", "hunter2", ["notifications.password", "Extra inputs are not permitted"]),
])
def test_a_bad_notification_setting_fails_naming_its_key(monkeypatch, variable, value, expected):
    monkeypatch.setenv(f"PIPELINE__NOTIFICATIONS__{variable}", value)
    with pytest.raises(SettingsError) as error:
        load_settings("local")
    for text in expected:
        assert text in str(error.value)


def test_enabled_without_an_address_fails_naming_to(monkeypatch):
    monkeypatch.setenv("PIPELINE__NOTIFICATIONS__ENABLED", "true")
    with pytest.raises(SettingsError, match=r"notifications: .*to: at least one address is required"):
        load_settings("local")


def test_notifications_are_off_locally_and_on_in_production():
    local, production = load_settings("local").notifications, load_settings("production").notifications
    assert not local.enabled and not local.wants("task_failed")
    assert production.enabled and production.to and production.wants("predictions_late")
    assert production.conn_id == "smtp_default"  # a connection id, never a credential
    assert local.deadline_interval == dt.timedelta(hours=5)


# --- what the DAGs carry ---

def _notifiers(callbacks) -> list:
    """The notification callbacks among a task's callbacks (approve also records its answer: common.approval)."""
    from common.approval import record_approval

    return [c for c in callbacks or [] if c is not record_approval]


def test_disabled_nothing_is_attached(load_dag):
    for dag_id in DAG_IDS:
        dag = load_dag(dag_id, "local")
        assert not dag.deadline, dag_id
        for task in dag.tasks:
            assert not _notifiers(task.on_failure_callback) and not _notifiers(task.on_success_callback), \
                f"{dag_id}.{task.task_id}"


@pytest.mark.parametrize("env", ["local", "production"])
def test_enabled_every_task_tells_its_failure_and_event_tasks_their_event(load_dag, env):
    from common.notify import PipelineNotifier

    for dag_id in DAG_IDS:
        dag = load_dag(dag_id, env, **ENABLED)
        for task in dag.tasks:
            where = f"{dag_id}.{task.task_id} ({env})"
            failure = _notifiers(task.on_failure_callback)
            assert [(type(c), c.event) for c in failure] == [(PipelineNotifier, "task_failed")], where
            event = EVENT_TASKS.get((dag_id, task.task_id))
            assert [c.event for c in _notifiers(task.on_success_callback)] == ([event] if event else []), where


def test_only_the_chosen_events_are_attached(load_dag):
    dag = load_dag("delay_model_training", "local", **ENABLED, PIPELINE__NOTIFICATIONS__EVENTS="[gate_rejected]")
    assert [c.event for c in dag.get_task("not_promoted").on_success_callback] == ["gate_rejected"]
    assert not dag.get_task("promote").on_success_callback and not dag.get_task("train").on_failure_callback
    scoring = load_dag("flights_batch_scoring", "local", **ENABLED, PIPELINE__NOTIFICATIONS__EVENTS="[task_failed]")
    assert not scoring.deadline


def test_scoring_carries_the_deadline_alert_built_from_settings(load_dag):
    from airflow.sdk import AsyncCallback
    from airflow.serialization.serialized_objects import DagSerialization
    from pipeline_deadlines import FlightDateStart

    dag = load_dag("flights_batch_scoring", "local", **ENABLED, PIPELINE__NOTIFICATIONS__PREDICTIONS_DEADLINE="06:30",
                   PIPELINE__NOTIFICATIONS__CONN_ID="smtp_alerts", PIPELINE__NOTIFICATIONS__DEADLINE_MAX_AGE_DAYS="3",
                   AIRFLOW__API__BASE_URL=BASE_URL)
    [alert] = dag.deadline
    assert alert.reference == FlightDateStart(max_age_days=3)
    assert alert.interval == dt.timedelta(hours=6, minutes=30)
    assert isinstance(alert.callback, AsyncCallback)  # runs in the triggerer
    assert alert.callback.path == "airflow.providers.smtp.notifications.smtp.SmtpNotifier"
    kwargs = alert.callback.kwargs
    assert kwargs["to"] == [TO] and kwargs["smtp_conn_id"] == "smtp_alerts" and "from_email" not in kwargs
    assert kwargs["subject"].startswith("[flight-delay] predictions late: flights_batch_scoring {{ dag_run.partition_key")
    assert f"{BASE_URL}/dags/flights_batch_scoring/runs/{{{{ dag_run.dag_run_id | urlencode }}}}" in kwargs["html_content"]
    assert "start of the flight date + 06:30" in kwargs["html_content"]
    # As the dag-processor hands it to the scheduler: the reference names the plugin's class.
    [serialized] = DagSerialization.to_dict(dag)["dag"]["deadline"]
    assert serialized["reference"] == {"reference_type": "FlightDateStart", "max_age_days": 3,
                                       "__class_path": "pipeline_deadlines.FlightDateStart"}
    assert serialized["interval"]["__data__"] == 6.5 * 3600


def test_the_deadline_plugin_registers_its_reference():
    from airflow.plugins_manager import AirflowPlugin
    from pipeline_deadlines import FlightDateStart, PipelineDeadlinesPlugin

    assert issubclass(PipelineDeadlinesPlugin, AirflowPlugin)
    assert PipelineDeadlinesPlugin.deadline_references == [FlightDateStart]
    assert FlightDateStart.deserialize_reference(FlightDateStart(max_age_days=5).serialize_reference()) == \
        FlightDateStart(max_age_days=5)


@pytest.mark.parametrize("partition_date,partition_key,logical_date,expected", [
    (dt.datetime(2013, 3, 2, tzinfo=UTC), "2013-03-02", None, dt.datetime(2013, 3, 2, tzinfo=UTC)),
    (None, "2013-03-02", None, dt.datetime(2013, 3, 2, tzinfo=UTC)),  # a partitioned run: no logical date
    (None, None, dt.datetime(2013, 3, 2, 17, 30, tzinfo=UTC), dt.datetime(2013, 3, 2, tzinfo=UTC)),
    (None, "not-a-date", None, None),
    (None, None, None, None),
])
def test_the_flight_date_of_a_run(partition_date, partition_key, logical_date, expected):
    from pipeline_deadlines import flight_date_start

    assert flight_date_start(partition_date, partition_key, logical_date) == expected


# --- the messages, from Airflow's own task contexts ---

def _facts(message) -> dict[str, str]:
    return dict(message.facts)


def test_a_failure_names_dag_task_date_try_reason_and_log(load_dag, runtime_ti, monkeypatch):
    from airflow.sdk.exceptions import AirflowException

    from common.notify import task_failed_message

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    dag = load_dag("flights_ingest", "local", **ENABLED)
    ti, context = runtime_ti(dag, "schedule.validate_and_publish", dt.datetime(2013, 3, 2, tzinfo=UTC), try_number=3)
    context["exception"] = AirflowException("jobs.ingest exited with code 1:\nERROR <boom> {{ not jinja }}")
    message = task_failed_message(context)
    assert message.event == "task_failed"
    assert message.subject == ("flights_ingest.schedule.validate_and_publish failed "
                               "(scheduled__2013-03-02T00:00:00+00:00)")
    facts = _facts(message)
    assert facts["DAG"] == "flights_ingest" and facts["Task"] == "schedule.validate_and_publish"
    assert facts["Logical date"] == "2013-03-02T00:00:00+00:00" and facts["Try"] == "3 of 3"
    assert facts["Flight date"] == "2013-03-02"  # the step's rendered --ds
    assert message.details == ["AirflowException: jobs.ingest exited with code 1:", "ERROR <boom> {{ not jinja }}"]
    assert dict(message.links)["Task log"] == ti.log_url
    assert ti.log_url.startswith(f"{BASE_URL}/dags/flights_ingest/runs/scheduled__2013-03-02T00")
    assert "ERROR &lt;boom&gt;" in message.html()  # escaped


def test_a_rejected_delivery_is_a_quarantine(load_dag, runtime_ti):
    from common.notify import task_failed_message
    from common.operators import StepRejected

    dag = load_dag("flights_ingest", "local", **ENABLED)
    _, context = runtime_ti(dag, "weather.validate_and_publish", dt.datetime(2013, 3, 2, tzinfo=UTC))
    context["exception"] = StepRejected("jobs.ingest rejected its input:\nweather 2013-03-02: column temp missing")
    message = task_failed_message(context)
    assert message.event == "quarantine"
    assert "weather.validate_and_publish rejected a delivery: the file is in quarantine" in message.subject
    assert "weather 2013-03-02: column temp missing" in message.details


def test_the_outcomes_feed_names_the_day_before_as_its_flight_date(load_dag, runtime_ti):
    from common.notify import task_failed_message

    dag = load_dag("flights_ingest", "local", **ENABLED)
    _, context = runtime_ti(dag, "flights.validate_and_publish", dt.datetime(2013, 3, 2, tzinfo=UTC))
    context["exception"] = RuntimeError("boom")
    facts = _facts(task_failed_message(context))
    assert facts["Flight date"] == "2013-03-01" and facts["Logical date"] == "2013-03-02T00:00:00+00:00"


def test_a_gate_rejection_gives_the_reasons_and_the_model_card(load_dag, runtime_ti, monkeypatch):
    from common.notify import gate_rejected_message

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    dag = load_dag("delay_model_training", "local", **ENABLED)
    _, context = runtime_ti(dag, "not_promoted", dt.datetime(2013, 3, 4, 6, tzinfo=UTC))
    gate = {"model_version": "7", "passed": False, "roc_auc": 0.58, "champion_version": "5",
            "reasons": ["FAIL roc_auc 0.580 < floor 0.600", "PASS no leakage"],
            "model_card_key": "reports/training/flight_delay/version=7/model_card.html"}
    evidence = {("evaluate_and_gate", "return_value"): [gate]}
    message = gate_rejected_message(context, pull=lambda task_id, key="return_value": evidence[(task_id, key)])
    assert message.event == "gate_rejected"
    assert message.subject.startswith("gate rejected flight_delay version 7 (scheduled__2013-03-04T06:00:00")
    assert message.details == gate["reasons"]
    facts = _facts(message)
    assert facts["Champion (unchanged)"] == "5" and facts["Holdout ROC AUC"] == "0.58"
    links = dict(message.links)
    assert links["Model card"] == f"{BASE_URL}/pipeline/reports/training/flight_delay/version=7/model_card.html"
    assert links["Gate log"].endswith("/tasks/evaluate_and_gate")


def test_a_drift_started_training_gives_the_drift_and_the_new_run(load_dag, runtime_ti, monkeypatch):
    from common.notify import drift_retraining_message

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    dag = load_dag("delay_model_monitoring", "local", **ENABLED)
    _, context = runtime_ti(dag, "trigger_retraining", dt.datetime(2013, 7, 2, 3, tzinfo=UTC))
    monitor = {"ds": "2013-07-02", "model_version": "3", "dataset_drift": True, "drift_share": 0.44,
               "drifted_columns": ["temp", "dewp"], "served_auc": 0.66, "decision": "retrain: drift 3 days",
               "report_key": "reports/drift/2013-07-02/data_drift.html"}
    conf = {"reason": "delay_model_monitoring 2013-07-02: drift on 3 consecutive days", "train_start": "2013-01-01",
            "train_end": "2013-06-24", "holdout_start": "2013-06-25", "holdout_end": "2013-07-01"}
    monitor["retrain_conf"] = conf
    evidence = {("monitor", "return_value"): [monitor]}
    message = drift_retraining_message(context, pull=lambda task_id, key="return_value": evidence[(task_id, key)])
    assert message.subject == "drift started a training: flight date 2013-07-02 (drift share 0.44)"
    facts = _facts(message)
    assert facts["Drifted columns"] == "temp, dewp" and facts["Served ROC AUC"] == "0.66"
    assert facts["Training windows"] == "train 2013-01-01..2013-06-24, holdout 2013-06-25..2013-07-01"
    assert message.details == [conf["reason"]]
    links = dict(message.links)
    assert links["Training run"] == f"{BASE_URL}/dags/delay_model_training/runs/monitoring__2013-07-02"
    assert links["Drift report"] == f"{BASE_URL}/pipeline/reports/drift/2013-07-02/data_drift.html"


def test_quarantined_rows_give_their_counts_and_a_clean_delivery_says_nothing(load_dag, runtime_ti):
    from common.notify import quarantine_message

    dag = load_dag("flights_ingest", "local", **ENABLED)
    _, context = runtime_ti(dag, "flights.validate_and_publish", dt.datetime(2013, 3, 2, tzinfo=UTC))
    clean = [{"feed": "flights", "ds": "2013-03-01", "status": "passed", "rows": 900, "rows_read": 900,
              "quarantined_rows": 0}]
    assert quarantine_message(context, pull=lambda task_id, key="return_value": clean) is None
    held = [{**clean[0], "status": "passed_with_quarantined_rows", "rows": 897, "quarantined_rows": 3,
             "quarantine_uri": "file:///lake/quarantine/flights/date=2013-03-01/attempt=x",
             "warnings": ["3 of 900 rows quarantined: arr_delay out of range"]}]
    message = quarantine_message(context, pull=lambda task_id, key="return_value": held)
    assert message.event == "quarantine"
    assert message.subject.startswith("3 row(s) quarantined: flights 2013-03-01 (scheduled__2013-03-02")
    assert _facts(message)["flights 2013-03-01"] == ("3 of 900 rows quarantined, 897 published "
                                                     "(passed_with_quarantined_rows)")
    assert "quarantine: file:///lake/quarantine/flights/date=2013-03-01/attempt=x" in message.details


def test_a_promotion_names_the_versions_and_the_reason(load_dag, runtime_ti):
    from common.notify import alias_change_message

    dag = load_dag("delay_model_training", "local", **ENABLED)
    # (promote's own context renders its arguments from XCom: the task before it stands in.)
    _, context = runtime_ti(dag, "skip_approval", dt.datetime(2013, 3, 4, 6, tzinfo=UTC))
    change = {"action": "promote", "model": "flight_delay", "champion": "7", "previous": "5", "from_version": "5",
              "reason": "gate passed (PASS roc_auc 0.700 >= floor 0.600)"}
    message = alias_change_message("promoted", context, pull=lambda task_id, key="return_value": [change])
    assert message.subject.startswith("flight_delay: champion promoted to version 7 (scheduled__2013-03-04T06")
    assert _facts(message)["Previous now"] == "5" and message.details == [change["reason"]]


def test_a_rollback_from_a_bare_context_still_names_its_run(load_dag):
    """A context without a task instance (the DAG processor's, for a task it failed) still gives ids and links."""
    from common.notify import alias_change_message

    dag = load_dag("delay_model_rollback", "local", **ENABLED)
    context = {"dag": dag, "task": dag.get_task("rollback"), "run_id": "manual__2026-12-06T01:00:00+00:00",
               "logical_date": dt.datetime(2026, 12, 6, 1, tzinfo=UTC), "params": {"reason": "v6 drifts"}}
    change = {"action": "rollback", "model": "flight_delay", "champion": "4", "previous": "6", "from_version": "6",
              "reason": ""}
    message = alias_change_message("rolled_back", context, pull=lambda task_id, key="return_value": [change])
    assert message.subject == "flight_delay: champion rolled back to version 4 (manual__2026-12-06T01:00:00+00:00)"
    assert _facts(message)["Moved from"] == "6" and message.details == ["v6 drifts"]
    assert dict(message.links)["Task log"].endswith(
        "/dags/delay_model_rollback/runs/manual__2026-12-06T01%3A00%3A00%2B00%3A00/tasks/rollback")


# --- sending ---

def test_disabled_or_unwanted_sends_nothing(monkeypatch, inbox):
    from common.notify import Message, send

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", inbox.connection_json())
    assert send(Message("task_failed", "x failed")) is False  # the local default: disabled
    for key, value in ENABLED.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PIPELINE__NOTIFICATIONS__EVENTS", "[gate_rejected]")
    assert send(Message("task_failed", "x failed")) is False
    assert inbox.wait_for(1, timeout_s=0.5) == []


def test_a_message_reaches_the_receiver_through_the_smtp_notifier(monkeypatch, inbox):
    from common.notify import Message, send

    for key, value in ENABLED.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PIPELINE__NOTIFICATIONS__CONN_ID", "smtp_test")
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_TEST", inbox.connection_json(from_email="pipeline@pipeline.test"))
    message = Message("gate_rejected", "gate rejected flight_delay version 7 (manual__x)", [("DAG", "delay_model_training")],
                      ["FAIL roc_auc 0.580 < floor 0.600"], [("Task log", f"{BASE_URL}/dags/d/runs/r/tasks/t")])
    assert send(message) is True
    [mail] = inbox.wait_for(1)
    assert mail.to == [TO] and mail.sender == "pipeline@pipeline.test"
    assert mail.subject == "[flight-delay] gate rejected flight_delay version 7 (manual__x)"
    assert "FAIL roc_auc 0.580 &lt; floor 0.600" in mail.html and f"{BASE_URL}/dags/d/runs/r/tasks/t" in mail.html


def test_an_unreachable_server_is_logged_not_raised(monkeypatch, caplog):
    from common.notify import Message, send

    for key, value in ENABLED.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", '{"conn_type": "smtp", "host": "127.0.0.1", "port": %d, '
                       '"extra": {"disable_ssl": true, "disable_tls": true, "from_email": "a@pipeline.test", '
                       '"timeout": 2, "retry_limit": 0}}' % free_port())
    assert send(Message("task_failed", "x failed")) is False
    assert "notification 'task_failed' not sent through connection 'smtp_default'" in caplog.text
