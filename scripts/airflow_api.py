"""The demo's, the replay's and the tests' Airflow 3 REST client: the official `apache-airflow-client`, plus
what driving a stack needs on top of it (a token, retries of the metadata database's refusals, waits).

Airflow 3 authenticates REST calls with a JWT: `POST /auth/token` with the user's name and
password (SimpleAuthManager locally) returns `access_token`, sent as `Authorization: Bearer`.
The token is fetched lazily and fetched again once if a call answers 401 (it expired).

Each call goes through the generated API classes (DAGApi, DagRunApi, TaskInstanceApi, XComApi, ...),
which build the paths, query strings and bodies from the OpenAPI document of the same release. The
answers are read as the JSON the server sent (`*_without_preload_content`), as plain dicts: a newer
server's extra field, or a field the generated model types more strictly than the server fills it,
never breaks a wait loop half-way through a replay.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airflow_client.client import ApiClient, Configuration
from airflow_client.client.api import DAGApi, DagRunApi, ImportErrorApi, MonitorApi, TaskInstanceApi, VersionApi, XComApi
from airflow_client.client.models import DAGPatchBody, DAGRunClearBody, DAGRunPatchBody, TriggerDAGRunPostBody
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tenacity.wait import wait_base

# DagRunState in the OpenAPI document: queued, running, success, failed.
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
# TaskInstanceState values after which a task instance will not change by itself.
FINISHED_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

RunKey = tuple[str, str]  # (dag_id, dag_run_id)


class AirflowAPIError(RuntimeError):
    """A REST call failed; the message carries the call, status and Airflow's detail."""

    def __init__(self, message: str, status_code: int | None = None, transient: bool = False):
        super().__init__(message)
        self.status_code = status_code
        self.transient = transient


# The API server answers 500 {"detail": {"reason": "Database error", ...}} when its metadata database refused a
# statement, on SQLite mostly "database is locked" while another component writes: worth a retry.
# Any other 5xx, and every 4xx, is the caller's to see at once.
RETRY_ATTEMPTS = 4
RETRY_WAIT: wait_base = wait_exponential(multiplier=1, max=10)  # 1, 2, 4 s


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, AirflowAPIError) and error.transient


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data.decode(errors="replace")


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("detail", body))
    return str(body)[:500]


def _database_error(status: int, body: Any) -> bool:
    """Airflow's SQLAlchemy error handler raises HTTPException(500, detail={"reason": "Database error", ...})."""
    detail = body.get("detail") if isinstance(body, dict) else None
    return status >= 500 and isinstance(detail, dict) and detail.get("reason") == "Database error"


def _moment(value: dt.datetime | dt.date | str | None) -> dt.datetime | None:
    """A timezone-aware datetime (a bare date means its midnight UTC, an ISO text is parsed)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(), tzinfo=dt.timezone.utc)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


class AirflowClient:
    """Authenticated calls to one Airflow API server.

    >>> client = AirflowClient("http://127.0.0.1:8080", "admin", password)
    >>> client.unpause("flights_ingest")
    >>> run = client.trigger("flights_ingest", logical_date=dt.date(2013, 3, 1), conf={})
    >>> client.wait_for_run("flights_ingest", run["dag_run_id"], timeout=900)
    """

    # Longer than the local stack's SQLite busy timeout (30 s): a call that waited for the write lock
    # still gets its answer (a read timeout on a POST would leave the caller not knowing what happened).
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 120.0):
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self.timeout = timeout
        self._configuration = Configuration(host=self.base_url)
        self._api = ApiClient(self._configuration)
        self.dags, self.dag_runs = DAGApi(self._api), DagRunApi(self._api)
        self.task_instances_api, self.xcom = TaskInstanceApi(self._api), XComApi(self._api)

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._api.rest_client.pool_manager.clear()  # the generated ApiClient has no close of its own

    # -- plumbing ---------------------------------------------------------------------------

    def token(self, refresh: bool = False) -> str:
        """A JWT for the configured user (Airflow 3: POST /auth/token; not part of the generated client)."""
        if self._configuration.access_token is None or refresh:
            response = self._api.rest_client.request(
                "POST", f"{self.base_url}/auth/token", headers={"Content-Type": "application/json"},
                body={"username": self._username, "password": self._password}, _request_timeout=self.timeout)
            body = _json(response.read())
            if response.status not in (200, 201):
                raise AirflowAPIError(f"POST /auth/token as {self._username!r}: HTTP {response.status}: "
                                      f"{_detail(body)}", response.status)
            self._configuration.access_token = body["access_token"]
        return self._configuration.access_token

    def call(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One call of the generated client (`operation`: e.g. `client.dag_runs.get_dag_run`), its JSON answer.

        A database error of the server is retried (RETRY_ATTEMPTS in all, backing off): the
        statement was rolled back, so the call can be made again, a POST included.
        """
        retrying = Retrying(retry=retry_if_exception(_is_transient), stop=stop_after_attempt(RETRY_ATTEMPTS),
                            wait=RETRY_WAIT, reraise=True)
        return retrying(self._call_once, operation, *args, **kwargs)

    def _call_once(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        raw = getattr(operation.__self__, f"{operation.__name__}_without_preload_content")
        self.token()
        response = raw(*args, _request_timeout=self.timeout, **kwargs)
        if response.status == 401:  # expired or revoked: one fresh token, one retry
            self.token(refresh=True)
            response = raw(*args, _request_timeout=self.timeout, **kwargs)
        body = _json(response.data)
        if response.status >= 400:
            where = ", ".join([*map(str, args), *(f"{k}={v}" for k, v in kwargs.items() if v is not None)])
            raise AirflowAPIError(f"{operation.__name__}({where}): HTTP {response.status}: {_detail(body)}",
                                  response.status, transient=_database_error(response.status, body))
        return body

    def _pages(self, operation: Callable[..., Any], field: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = self.call(operation, *args, limit=100, offset=len(items), **kwargs)
            items.extend(page[field])
            if not page[field] or len(items) >= page["total_entries"]:
                return items

    # -- service ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Health of the metadata DB, scheduler, triggerer and dag processor (no auth needed)."""
        response = MonitorApi(self._api).get_health_without_preload_content(_request_timeout=self.timeout)
        if response.status != 200:
            raise AirflowAPIError(f"get_health: HTTP {response.status}", response.status)
        return _json(response.data)

    def version(self) -> dict[str, Any]:
        return self.call(VersionApi(self._api).get_version)

    # -- DAGs ---------------------------------------------------------------------------------

    def list_dags(self, **filters: Any) -> list[dict[str, Any]]:
        """Every DAG the API lists (pages through); filters as DAGApi.get_dags takes them, e.g. paused=False."""
        return self._pages(self.dags.get_dags, "dags", **filters)

    def get_dag(self, dag_id: str) -> dict[str, Any]:
        return self.call(self.dags.get_dag, dag_id)

    def dag_details(self, dag_id: str) -> dict[str, Any]:
        """The DAG with its Params (`params`: name -> {"value", "schema", "description"})."""
        return self.call(self.dags.get_dag_details, dag_id)

    def import_errors(self) -> list[dict[str, Any]]:
        """DAG files that failed to parse: each with `filename` and `stack_trace`."""
        return self.call(ImportErrorApi(self._api).get_import_errors, limit=100)["import_errors"]

    def wait_for_dags(
        self, dag_ids: Iterable[str], timeout: float = 120.0, poll: float = 2.0
    ) -> dict[str, dict[str, Any]]:
        """Wait until the dag processor has parsed every DAG in `dag_ids`.

        Fails early, naming the file and its traceback, if an import error is reported for
        any DAG still missing (its file cannot parse, so waiting longer will not help).
        """
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        while True:
            found = {dag["dag_id"]: dag for dag in self.list_dags() if dag["dag_id"] in wanted}
            if len(found) == len(wanted):
                return found
            missing = sorted(wanted - set(found))
            errors = self.import_errors()
            if errors:
                details = "\n".join(f"{e['filename']}:\n{e['stack_trace']}" for e in errors)
                raise AirflowAPIError(f"DAGs {missing} are not parsed; import errors:\n{details}")
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"DAGs {missing} did not appear within {timeout:.0f} s")
            time.sleep(poll)

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        return self.call(self.dags.patch_dag, dag_id, DAGPatchBody(is_paused=paused))

    def unpause(self, dag_id: str) -> dict[str, Any]:
        return self.set_paused(dag_id, False)

    def pause(self, dag_id: str) -> dict[str, Any]:
        return self.set_paused(dag_id, True)

    # -- DAG runs ---------------------------------------------------------------------------

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        logical_date: dt.datetime | dt.date | str | None = None,
        run_id: str | None = None,
        note: str | None = None,
        partition_key: str | None = None,
    ) -> dict[str, Any]:
        """Start a DAG run; returns the DAGRunResponse (its `dag_run_id`, `state`, ...).

        `logical_date=None` starts a run with no logical date (Airflow 3 allows it); a date
        means its midnight UTC, i.e. the run for that day under CronTriggerTimetable. A
        `partition_key` starts the run a partitioned timetable would have started for it.
        """
        body = TriggerDAGRunPostBody(logical_date=_moment(logical_date), conf=dict(conf or {}), dag_run_id=run_id,
                                     note=note, partition_key=partition_key)
        return self.call(self.dag_runs.trigger_dag_run, dag_id, body)

    def clear_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """Clear a run: its tasks run again (tasks it lacks, e.g. after a DAG change, are created)."""
        return self.call(self.dag_runs.clear_dag_run, dag_id, run_id, DAGRunClearBody(dry_run=False))

    def delete_run(self, dag_id: str, run_id: str) -> None:
        self.call(self.dag_runs.delete_dag_run, dag_id, run_id)

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> dict[str, Any]:
        """Mark a run success, failed or queued (as the UI's "Mark as" does)."""
        return self.call(self.dag_runs.patch_dag_run, dag_id, run_id, DAGRunPatchBody(state=state))

    def get_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.call(self.dag_runs.get_dag_run, dag_id, run_id)

    def list_runs(
        self, dag_id: str = "~", state: str | Iterable[str] | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest runs first; dag_id "~" lists runs of every DAG."""
        states = None if state is None else [state] if isinstance(state, str) else list(state)
        return self.call(self.dag_runs.get_dag_runs, dag_id, limit=limit, order_by=["-run_after"],
                         state=states)["dag_runs"]

    def runs_at(self, dag_id: str, moment: dt.datetime | dt.date | str) -> list[dict[str, Any]]:
        """The runs of `dag_id` whose logical date is `moment` (a date: its midnight UTC)."""
        at = _moment(moment)
        return self.call(self.dag_runs.get_dag_runs, dag_id, logical_date_gte=at, logical_date_lte=at)["dag_runs"]

    def all_runs(self, dag_id: str = "~", **filters: Any) -> list[dict[str, Any]]:
        """Every run (pages through); filters as DagRunApi.get_dag_runs takes them."""
        return self._pages(self.dag_runs.get_dag_runs, "dag_runs", dag_id, **filters)

    def task_instances(self, dag_id: str, run_id: str, state: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The task instances of one run ("~" for `dag_id` and `run_id`: of every run), up to 1000."""
        return self.call(self.task_instances_api.get_task_instances, dag_id, run_id, limit=1000,
                         state=None if state is None else list(state))["task_instances"]

    def all_task_instances(self, dag_id: str = "~", run_id: str = "~") -> list[dict[str, Any]]:
        """Every task instance (pages through)."""
        return self._pages(self.task_instances_api.get_task_instances, "task_instances", dag_id, run_id)

    def xcom_value(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The value a task pushed (its result by default); AirflowAPIError 404 when it pushed none."""
        return self.call(self.xcom.get_xcom_entry, dag_id, task_id, run_id, key).get("value")

    def extra_links(self, dag_id: str, run_id: str, task_id: str) -> dict[str, str | None]:
        """A task instance's operator links: name -> URL."""
        return self.call(self.task_instances_api.get_extra_links, dag_id, run_id, task_id)["extra_links"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The log of one try of one task instance, one line per event."""
        body = self.call(self.task_instances_api.get_log, dag_id, run_id, task_id, try_number, full_content=True,
                         map_index=map_index, accept="application/json")
        return "\n".join(_log_line(entry) for entry in body["content"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 1800.0, **kwargs: Any) -> dict[str, Any]:
        """Wait for one run to succeed or fail; returns its final DAGRunResponse."""
        return self.wait_for_runs([(dag_id, run_id)], timeout=timeout, **kwargs)[(dag_id, run_id)]

    def wait_for_runs(
        self,
        runs: Iterable[RunKey],
        timeout: float = 1800.0,
        poll: float = 5.0,
        echo: Callable[[str], None] | None = print,
        heartbeat: float = 60.0,
    ) -> dict[RunKey, dict[str, Any]]:
        """Wait until every (dag_id, run_id) reaches success or failed, printing progress.

        A line is printed whenever a run's task counts change (and every `heartbeat` seconds
        otherwise). Raises AirflowAPIError on timeout, naming the runs still going; failed
        runs are returned, not raised: the caller decides what a failure means.
        """
        pending = list(dict.fromkeys(runs))
        done: dict[RunKey, dict[str, Any]] = {}
        last_line: dict[RunKey, str] = {}
        last_print = time.monotonic()
        started = time.monotonic()
        while True:
            for key in list(pending):
                run = self.get_run(*key)
                tasks = self.task_instances(*key)
                line = _progress_line(run, tasks)
                if echo and (line != last_line.get(key) or time.monotonic() - last_print > heartbeat):
                    echo(f"[{time.monotonic() - started:6.0f}s] {line}")
                    last_line[key] = line
                    last_print = time.monotonic()
                if run["state"] in TERMINAL_RUN_STATES:
                    done[key] = run
                    pending.remove(key)
            if not pending:
                return done
            if time.monotonic() - started > timeout:
                still = ", ".join(f"{d}/{r}" for d, r in pending)
                raise AirflowAPIError(f"runs not finished after {timeout:.0f} s: {still}")
            time.sleep(poll)


def _progress_line(run: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    counts = Counter(task["state"] or "none" for task in tasks)
    finished = sum(n for state, n in counts.items() if state in FINISHED_TASK_STATES)
    detail = ", ".join(f"{state} {n}" for state, n in sorted(counts.items()))
    return f"{run['dag_id']} {run['dag_run_id']}: {run['state']} ({finished}/{len(tasks)} tasks done: {detail})"


def _log_line(entry: str | dict[str, Any]) -> str:
    if isinstance(entry, str):  # the server could not parse the log into events
        return entry
    head = " ".join(str(entry[key]) for key in ("timestamp", "level", "logger") if entry.get(key))
    return f"{head} {entry.get('event', '')}".strip()
