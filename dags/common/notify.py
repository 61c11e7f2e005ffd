"""Notifications: what went wrong or what was decided, mailed through Airflow's SMTP notifier.

`notifications:` in settings says whether, to whom, for which events and through which Airflow
connection (credentials by reference: AIRFLOW_CONN_<CONN_ID> or a secrets backend). Disabled,
nothing here is attached to a DAG and nothing is sent.

    default_args (common/config.py)      on_failure_callback: every task of every DAG
    task_callback("gate_rejected")       on_success_callback of the task that marks the event
    predictions_deadline()               the DeadlineAlert of flights_batch_scoring

Every message names the DAG, the task, the logical date and the flight date, says why (the
gate's reasons, the drift share, the quarantined rows: read from the task's XCom, references
only) and links to the task's log in the Airflow UI (`[api] base_url`). Sending never fails a
task: a mail that cannot go out is logged.
"""
from __future__ import annotations

import datetime as dt
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from common.config import REPO_ROOT, settings

log = logging.getLogger(__name__)

SCORING_DAG_ID = "flights_batch_scoring"


@dataclass
class Message:
    """One notification: its event, a one-line subject, labelled facts, details, links."""

    event: str
    subject: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)

    def html(self) -> str:
        rows = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in self.facts)
        details = "".join(f"<li>{html.escape(line)}</li>" for line in self.details)
        links = "".join(f"<li><a href='{html.escape(url, quote=True)}'>{html.escape(label)}</a>: "
                        f"{html.escape(url)}</li>" for label, url in self.links)
        return (f"<h3>{html.escape(self.subject)}</h3><table>{rows}</table>"
                + (f"<ul>{details}</ul>" if details else "") + (f"<p>Links:</p><ul>{links}</ul>" if links else ""))


# --- reading the callback context (a task's, or the DAG processor's for a task it failed) ---

def _get(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def base_url() -> str:
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")


def run_url(dag_id: str, run_id: str) -> str:
    return f"{base_url()}/dags/{dag_id}/runs/{quote(run_id, safe='')}"


def task_log_url(dag_id: str, run_id: str, task_id: str, try_number: int | None = None) -> str:
    tail = f"?try_number={try_number}" if try_number else ""
    return f"{run_url(dag_id, run_id)}/tasks/{task_id}{tail}"


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value) if value else "none"


def run_facts(context: dict[str, Any]) -> tuple[str, str, str, list[tuple[str, str]]]:
    """(dag_id, task_id, run_id, facts) of the task a callback is about."""
    ti, dag_run = context.get("ti") or context.get("task_instance"), context.get("dag_run")
    dag_id = _get(ti, "dag_id") or _get(context.get("dag"), "dag_id") or _get(dag_run, "dag_id") or "?"
    task_id = _get(ti, "task_id") or _get(context.get("task"), "task_id") or "?"
    run_id = _get(ti, "run_id") or _get(dag_run, "run_id") or context.get("run_id") or "?"
    logical = context.get("logical_date") or _get(dag_run, "logical_date")
    partition = context.get("partition_key") or _get(dag_run, "partition_key")
    facts = [("DAG", dag_id), ("Task", task_id), ("Run", run_id), ("Logical date", _when(logical))]
    if partition:
        facts.append(("Partition (flight date)", str(partition)))
    elif flight_date := step_flight_date(context.get("task")):
        facts.append(("Flight date", flight_date))
    return dag_id, task_id, run_id, facts


def step_flight_date(task: Any) -> str | None:
    """The flight date a step task was given (`--ds F`, rendered): D-1 for outcomes, D for the rest."""
    arguments = _get(task, "arguments")
    if not isinstance(arguments, (list, tuple)) or "--ds" not in arguments:
        return None
    index = list(arguments).index("--ds") + 1
    value = str(arguments[index]) if index < len(arguments) else ""
    return value if value and "{" not in value else None


def _log_link(context: dict[str, Any], dag_id: str, run_id: str, task_id: str) -> tuple[str, str]:
    ti = context.get("ti") or context.get("task_instance")
    url = None
    try:
        url = _get(ti, "log_url")
    except Exception:  # noqa: BLE001 - a TI without a log URL still gets a link built from its ids
        url = None
    return ("Task log", url or task_log_url(dag_id, run_id, task_id, _get(ti, "try_number")))


# (task_id, key) -> the XCom of that task in this run; builders take one, so that tests can hand them evidence.
Pull = Callable[..., Any]


def _xcom(context: dict[str, Any], task_id: str, key: str = "return_value") -> Any:
    ti = context.get("ti") or context.get("task_instance")
    try:
        value = ti.xcom_pull(task_ids=task_id, key=key)
    except Exception as exc:  # noqa: BLE001 - a message without the evidence beats no message
        log.warning("XCom %s of %s unreadable: %s", key, task_id, exc)
        return None
    return value


def first_result(value: Any) -> dict[str, Any]:
    """A step's XCom is its list of STEP_RESULT dicts; most steps emit one."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return value if isinstance(value, dict) else {}


# --- the message of each event (pure: context in, Message out) ---

def task_failed_message(context: dict[str, Any], pull: Pull | None = None) -> Message:
    """A task failed for good; an ingest rejection is a quarantine (the file went there)."""
    from common.operators import StepRejected

    dag_id, task_id, run_id, facts = run_facts(context)
    exception = context.get("exception")
    ti = context.get("ti") or context.get("task_instance")
    task = context.get("task")
    reason = f"{type(exception).__name__}: {exception}" if isinstance(exception, BaseException) else str(exception or
                                                                                                    "unknown")
    facts.append(("Try", f"{_get(ti, 'try_number', '?')} of {(_get(task, 'retries') or 0) + 1}"))
    event, what = "task_failed", "failed"
    if isinstance(exception, StepRejected) and _get(task, "step") == "ingest":
        event, what = "quarantine", "rejected a delivery: the file is in quarantine"
    details = [line for line in reason.splitlines() if line.strip()][:40]
    return Message(event, f"{dag_id}.{task_id} {what} ({run_id})", facts, details,
                   [_log_link(context, dag_id, run_id, task_id), ("DAG run", run_url(dag_id, run_id))])


def _puller(context: dict[str, Any], pull: Pull | None) -> Pull:
    return pull or (lambda task_id, key="return_value": _xcom(context, task_id, key))


def gate_rejected_message(context: dict[str, Any], pull: Pull | None = None) -> Message:
    """The gate refused the candidate (delay_model_training's `not_promoted`): its reasons."""
    dag_id, task_id, run_id, facts = run_facts(context)
    gate = first_result(_puller(context, pull)("evaluate_and_gate"))
    name = settings().mlflow.model_name
    facts += [("Model", f"{name} version {gate.get('model_version', '?')}"),
              ("Holdout ROC AUC", str(gate.get("roc_auc", "?"))),
              ("Champion (unchanged)", str(gate.get("champion_version") or "none"))]
    reason = (context.get("params") or {}).get("reason")
    if reason:
        facts.append(("Why it trained", str(reason)))
    links = [("Gate log", task_log_url(dag_id, run_id, "evaluate_and_gate"))]
    if gate.get("model_card_key"):
        links.append(("Model card", f"{base_url()}/pipeline/{gate['model_card_key']}"))
    links.append(_log_link(context, dag_id, run_id, task_id))
    return Message("gate_rejected", f"gate rejected {name} version {gate.get('model_version', '?')} ({run_id})",
                   facts, [str(r) for r in gate.get("reasons") or ["(no reasons in XCom)"]], links)


def drift_retraining_message(context: dict[str, Any], pull: Pull | None = None) -> Message:
    """Monitoring triggered a training (delay_model_monitoring's `trigger_retraining`): the evidence."""
    dag_id, task_id, run_id, facts = run_facts(context)
    pull = _puller(context, pull)
    result = first_result(pull("monitor"))
    conf = result.get("retrain_conf") or {}
    ds = result.get("ds") or context.get("ds")
    facts += [("Flight date", str(ds)), ("Champion", str(result.get("model_version", "?"))),
              ("Drift share", str(result.get("drift_share", "?"))),
              ("Dataset drift", str(result.get("dataset_drift", "?"))),
              ("Drifted columns", ", ".join(result.get("drifted_columns") or []) or "none"),
              ("Served ROC AUC", str(result.get("served_auc", "?")))]
    if conf:
        facts.append(("Training windows", f"train {conf.get('train_start')}..{conf.get('train_end')}, "
                                          f"holdout {conf.get('holdout_start')}..{conf.get('holdout_end')}"))
    from jobs.retrain import monitoring_run_id

    training_run = monitoring_run_id(str(ds))
    links = [("Training run", run_url("delay_model_training", training_run)),
             ("Monitor log", task_log_url(dag_id, run_id, "monitor")), _log_link(context, dag_id, run_id, task_id)]
    if result.get("report_key"):
        links.insert(1, ("Drift report", f"{base_url()}/pipeline/{result['report_key']}"))
    details = [str(conf.get("reason") or result.get("decision") or "(no decision in XCom)")]
    return Message("drift_retraining", f"drift started a training: flight date {ds} "
                                       f"(drift share {result.get('drift_share', '?')})", facts, details, links)


def quarantine_message(context: dict[str, Any], pull: Pull | None = None) -> Message | None:
    """Rows of a delivery set aside in quarantine (a rejected file is a failure: task_failed_message)."""
    dag_id, task_id, run_id, facts = run_facts(context)
    results = _puller(context, pull)(task_id) or []
    held = [r for r in results if isinstance(r, dict) and r.get("quarantined_rows")]
    if not held:
        return None
    details = []
    for r in held:
        facts.append((f"{r.get('feed')} {r.get('ds')}",
                      f"{r['quarantined_rows']} of {r.get('rows_read', '?')} rows quarantined, "
                      f"{r.get('rows', '?')} published ({r.get('status')})"))
        details += [f"{r.get('feed')} {r.get('ds')}: {line}" for line in (r.get("warnings") or r.get("failures") or [])]
        if r.get("quarantine_uri"):
            details.append(f"quarantine: {r['quarantine_uri']}")
    total = sum(int(r["quarantined_rows"]) for r in held)
    feeds = ", ".join(f"{r.get('feed')} {r.get('ds')}" for r in held)
    return Message("quarantine", f"{total} row(s) quarantined: {feeds} ({run_id})", facts, details[:40],
                   [_log_link(context, dag_id, run_id, task_id)])


def alias_change_message(event: str, context: dict[str, Any], pull: Pull | None = None) -> Message:
    """The champion alias moved: `promoted` (delay_model_training) or `rolled_back` (delay_model_rollback)."""
    dag_id, task_id, run_id, facts = run_facts(context)
    change = first_result(_puller(context, pull)(task_id))
    model = change.get("model") or settings().mlflow.model_name
    facts += [("Champion now", str(change.get("champion") or "?")),
              ("Previous now", str(change.get("previous") or "none")),
              ("Moved from", str(change.get("from_version") or "none"))]
    what = "promoted" if event == "promoted" else "rolled back"
    return Message(event, f"{model}: champion {what} to version {change.get('champion', '?')} ({run_id})", facts,
                   [str(change.get("reason") or (context.get("params") or {}).get("reason") or "")],
                   [_log_link(context, dag_id, run_id, task_id)])


def predictions_missing_message(context: dict[str, Any], pull: Pull | None = None) -> Message | None:
    """D's predictions never came (delay_model_monitoring's `wait_for_predictions` gave up): the daily clock
    notices, whether or not a scoring run for D was ever created (a deadline needs a run to exist). None for
    a day outside the source's dates (the sensor skips those too: nothing was due)."""
    from jobs.score import predictions_key

    dag_id, task_id, run_id, facts = run_facts(context)
    ds = context.get("ds")
    if ds is None or not settings().data.covers(dt.date.fromisoformat(str(ds))):
        return None
    task = context.get("task")
    facts += [("Flight date", str(ds)), ("Waited for", predictions_key(str(ds))),
              ("Waited", f"{_get(task, 'timeout', '?')} s")]
    details = [f"No predictions for {ds} were written while monitoring waited: {SCORING_DAG_ID} has no finished run "
               f"for that date. Its features may never have arrived: look at flights_features and flights_ingest "
               f"for {ds}. Monitoring of {ds} goes on with prediction drift marked missing."]
    links = [("Scoring runs", f"{base_url()}/dags/{SCORING_DAG_ID}/runs"), _log_link(context, dag_id, run_id, task_id)]
    return Message("predictions_late", f"no predictions for flight date {ds} ({run_id})", facts, details, links)


BUILDERS = {
    "task_failed": task_failed_message,
    "gate_rejected": gate_rejected_message,
    "drift_retraining": drift_retraining_message,
    "quarantine": quarantine_message,
    "promoted": lambda context, pull=None: alias_change_message("promoted", context, pull),
    "rolled_back": lambda context, pull=None: alias_change_message("rolled_back", context, pull),
    "predictions_late": predictions_missing_message,
}


# --- sending ---

def send(message: Message, context: dict[str, Any] | None = None) -> bool:
    """Mail `message` through the provider's SmtpNotifier when its event is wanted; never raises."""
    config = settings().notifications
    if not config.wants(message.event):
        return False
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    subject = f"{config.subject_prefix} {message.subject}".strip()
    notifier = SmtpNotifier(to=list(config.to), from_email=config.from_email, subject=subject,
                            html_content=message.html(), smtp_conn_id=config.conn_id)
    try:
        # notify(), not the notifier's __call__: the content is final, and an error text with
        # braces in it must not go through Jinja.
        notifier.notify(context or {})
    except Exception:  # noqa: BLE001 - a notification must never fail the pipeline
        log.exception("notification %r not sent through connection %r", message.event, config.conn_id)
        return False
    log.info("notification %r sent to %s: %s", message.event, ", ".join(config.to), subject)
    return True


class PipelineNotifier(BaseNotifier):
    """An Airflow notifier for one pipeline event: the message from the task's context and XCom."""

    def __init__(self, event: str):
        super().__init__()
        self.event = event

    def notify(self, context: Any) -> None:
        try:
            message = BUILDERS[self.event](context)
        except Exception:  # noqa: BLE001 - a notification must never fail the pipeline
            log.exception("notification %r: the message could not be built", self.event)
            return
        if message is not None:
            send(message, context)


def task_callback(event: str) -> PipelineNotifier | None:
    """The on_success_callback of the task that marks `event`; None when it is not wanted."""
    if event not in BUILDERS:
        raise KeyError(f"no notification event {event!r} (known: {', '.join(BUILDERS)})")
    return PipelineNotifier(event) if settings().notifications.wants(event) else None


def failure_callback_args() -> dict[str, Any]:
    """default_args entries: every task's failure is told (a rejected delivery as a quarantine)."""
    config = settings().notifications
    if not (config.wants("task_failed") or config.wants("quarantine")):
        return {}
    return {"on_failure_callback": PipelineNotifier("task_failed")}


# --- the deadline of D's predictions ---

def _deadline_reference_class() -> type:
    """FlightDateStart from plugins/pipeline_deadlines.py, under its plugin module name (the scheduler
    finds it by that path); loaded from the repository when the plugins folder is not on sys.path."""
    try:
        from pipeline_deadlines import FlightDateStart
    except ImportError:
        import importlib.util
        import sys

        spec = importlib.util.spec_from_file_location("pipeline_deadlines",
                                                      REPO_ROOT / "plugins" / "pipeline_deadlines.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["pipeline_deadlines"] = module
        spec.loader.exec_module(module)
        FlightDateStart = module.FlightDateStart
    return FlightDateStart


def predictions_late_content(dag_id: str = SCORING_DAG_ID) -> dict[str, str]:
    """Subject and body of the deadline's mail: Jinja, rendered in the triggerer with the deadline's
    context (`dag_run`: the run as the REST API shows it, `deadline`: its id and time)."""
    config = settings().notifications
    # `dag_run` as the REST API shows a run: its run id is `dag_run_id`.
    flight_date = "{{ dag_run.partition_key or dag_run.logical_date or dag_run.dag_run_id }}"
    run_link = f"{base_url()}/dags/{dag_id}/runs/{{{{ dag_run.dag_run_id | urlencode }}}}"
    subject = f"{config.subject_prefix} predictions late: {dag_id} {flight_date} not written by {{{{ deadline.deadline_time }}}}"
    body = (f"<h3>Predictions of flight date {flight_date} are late</h3><table>"
            f"<tr><th align='left'>DAG</th><td>{dag_id}</td></tr>"
            "<tr><th align='left'>Run</th><td>{{ dag_run.dag_run_id }}</td></tr>"
            f"<tr><th align='left'>Flight date</th><td>{flight_date}</td></tr>"
            "<tr><th align='left'>State</th><td>{{ dag_run.state }}</td></tr>"
            "<tr><th align='left'>Deadline</th><td>{{ deadline.deadline_time }}"
            f" (start of the flight date + {config.predictions_deadline})</td></tr></table>"
            "<p>The run has not finished writing the predictions partition by its deadline: scoring may be "
            "slow or failing, or its features came late. Monitoring of this date waits for them.</p>"
            f"<p>Links:</p><ul><li><a href='{run_link}'>DAG run</a>: {run_link}</li></ul>")
    return {"subject": subject.strip(), "html_content": body}


def predictions_deadline(dag_id: str = SCORING_DAG_ID) -> Any:
    """The DeadlineAlert of a scoring run: D's predictions by `notifications.predictions_deadline` after the
    start of D, else the provider's SmtpNotifier mails, from the triggerer (AsyncCallback). None: not wanted."""
    config = settings().notifications
    if not config.wants("predictions_late"):
        return None
    from airflow.sdk import AsyncCallback, DeadlineAlert

    kwargs: dict[str, Any] = {"to": list(config.to), "smtp_conn_id": config.conn_id,
                              **predictions_late_content(dag_id)}
    if config.from_email:
        kwargs["from_email"] = config.from_email
    return DeadlineAlert(
        reference=_deadline_reference_class()(max_age_days=config.deadline_max_age_days),
        interval=config.deadline_interval,
        callback=AsyncCallback("airflow.providers.smtp.notifications.smtp.SmtpNotifier", kwargs=kwargs),
        name="predictions_late",
    )
