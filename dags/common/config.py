"""Settings and the standard DAG header values, read from the one settings object."""
from __future__ import annotations

import datetime as dt

# The pipeline package is installed (pyproject.toml): importable in every Airflow component.
from jobs.settings import REPO_ROOT, Settings, get_settings

__all__ = ["REPO_ROOT", "Settings", "default_args", "end_date", "settings", "start_date"]


def settings() -> Settings:
    return get_settings()


def start_date(dag_id: str | None = None) -> dt.datetime:
    """The schedules' first date (`airflow.start_date`), or the DAG's own (`airflow.start_dates`) where set."""
    airflow = settings().airflow
    day = airflow.start_dates.get(dag_id, airflow.start_date) if dag_id else airflow.start_date
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)


def end_date() -> dt.datetime | None:
    end = settings().airflow.end_date
    return dt.datetime.combine(end, dt.time(), tzinfo=dt.timezone.utc) if end else None


def default_args() -> dict:
    """Owner, retries with exponential backoff, the failure notification: the same for every task of every DAG."""
    from common.notify import failure_callback_args  # it reads settings through this module

    airflow = settings().airflow
    return {
        **failure_callback_args(),
        "owner": airflow.owner,
        "retries": airflow.retries,
        "retry_delay": dt.timedelta(seconds=airflow.retry_delay_s),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(seconds=airflow.max_retry_delay_s),
    }


# The retraining loop's critical path: in a catch-up (a backfill, a replay, a scheduler back after an
# outage) monitoring judges one day at a time, and waits for a training it started, while ingestion,
# features and scoring run days ahead. When worker slots are short, these tasks go first.
CRITICAL_PATH = {"priority_weight": 10, "weight_rule": "absolute"}


def schedule_cron(dag_id: str) -> str:
    try:
        return settings().airflow.schedules[dag_id]
    except KeyError:
        raise KeyError(f"airflow.schedules.{dag_id} is not set in config/settings.yaml") from None


def step_env() -> dict[str, str]:
    """The environment every heavy step gets in Kubernetes (pod or Spark application), besides secrets."""
    current = settings()
    return {"PIPELINE_ENV": current.env, "LAKE_ROOT": current.lake_root,
            "MLFLOW_TRACKING_URI": current.mlflow.tracking_uri}
