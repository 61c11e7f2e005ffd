"""A small client for the Airflow 3 REST API (`/api/v2`), enough to drive a demo or a test.

Airflow 3 authenticates REST calls with a JWT: `POST /auth/token` with the user's name and
password (SimpleAuthManager locally) returns `access_token`, sent as `Authorization: Bearer`.
The token is fetched lazily and fetched again once if a call answers 401 (it expired).

Endpoints used (checked against the OpenAPI document of apache-airflow 3.3.2):
    GET   /api/v2/monitor/health                         (no auth)
    GET   /api/v2/version
    GET   /api/v2/dags, /api/v2/dags/{dag_id}, /api/v2/dags/{dag_id}/details
    PATCH /api/v2/dags/{dag_id}                          {"is_paused": bool}
    GET   /api/v2/importErrors
    POST  /api/v2/dags/{dag_id}/dagRuns                  {"logical_date", "conf", "dag_run_id", "note"}
    GET   /api/v2/dags/{dag_id}/dagRuns[/{dag_run_id}]   (dag_id "~" = every DAG)
    POST  /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear, DELETE /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}
    GET   /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances
    GET   /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}
"""
from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tenacity.wait import wait_base

# DagRunState in the OpenAPI document: queued, running, success, failed.
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
# TaskInstanceState values after which a task instance will not change by itself.
FINISHED_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

RunKey = tuple[str, str]  # (dag_id, dag_run_id)


class AirflowAPIError(RuntimeError):
    """A REST call failed; the message carries the method, path, status and Airflow's detail."""

    def __init__(self, message: str, status_code: int | None = None, transient: bool = False):
        super().__init__(message)
        self.status_code = status_code
        self.transient = transient


# The API server answers 500 {"reason": "Database error"} when its metadata database refused a
# statement, on SQLite mostly "database is locked" while another component writes: worth a retry.
# Any other 5xx, and every 4xx, is the caller's to see at once.
RETRY_ATTEMPTS = 4
RETRY_WAIT: wait_base = wait_exponential(multiplier=1, max=10)  # 1, 2, 4 s


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, AirflowAPIError) and error.transient


def _database_error(response: httpx.Response) -> bool:
    if response.status_code < 500:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("reason") == "Database error"


def _iso(value: dt.datetime | dt.date | str | None) -> str | None:
    """An ISO-8601 timestamp with a timezone (a bare date means its midnight UTC)."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(), tzinfo=dt.timezone.utc)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat()


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
        self._token: str | None = None
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------------

    def token(self, refresh: bool = False) -> str:
        """A JWT for the configured user (Airflow 3: POST /auth/token)."""
        if self._token is None or refresh:
            response = self._http.post(
                "/auth/token", json={"username": self._username, "password": self._password}
            )
            if response.status_code not in (200, 201):
                raise AirflowAPIError(
                    f"POST /auth/token as {self._username!r}: HTTP {response.status_code}: "
                    f"{_detail(response)}",
                    response.status_code,
                )
            self._token = response.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call `path` (relative to the server, e.g. /api/v2/dags) and return the decoded JSON.

        A database error of the server is retried (RETRY_ATTEMPTS in all, backing off): the
        statement was rolled back, so the call can be made again, a POST included.
        """
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(RETRY_ATTEMPTS),
            wait=RETRY_WAIT,
            reraise=True,
        )
        return retrying(self._request_once, method, path, **kwargs)

    def _request_once(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **dict(kwargs))
        if response.status_code == 401:  # expired or revoked: one fresh token, one retry
            self.token(refresh=True)
            response = self._send(method, path, **dict(kwargs))
        if response.is_error:
            raise AirflowAPIError(
                f"{method} {path}: HTTP {response.status_code}: {_detail(response)}",
                response.status_code,
                transient=_database_error(response),
            )
        if not response.content:
            return None
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.text

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return self._http.request(method, path, headers=headers, **kwargs)

    # -- service ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Health of the metadata DB, scheduler, triggerer and dag processor (no auth needed)."""
        response = self._http.get("/api/v2/monitor/health")
        response.raise_for_status()
        return response.json()

    def version(self) -> dict[str, Any]:
        return self.request("GET", "/api/v2/version")

    # -- DAGs ---------------------------------------------------------------------------------

    def list_dags(self, **filters: Any) -> list[dict[str, Any]]:
        """Every DAG the API lists (pages through); filters are query params, e.g. paused=False."""
        dags: list[dict[str, Any]] = []
        while True:
            page = self.request("GET", "/api/v2/dags", params={"limit": 100, "offset": len(dags), **filters})
            dags.extend(page["dags"])
            if not page["dags"] or len(dags) >= page["total_entries"]:
                return dags

    def get_dag(self, dag_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}")

    def dag_details(self, dag_id: str) -> dict[str, Any]:
        """The DAG with its Params (`params`: name -> {"value", "schema", "description"})."""
        return self.request("GET", f"/api/v2/dags/{dag_id}/details")

    def import_errors(self) -> list[dict[str, Any]]:
        """DAG files that failed to parse: each with `filename` and `stack_trace`."""
        return self.request("GET", "/api/v2/importErrors", params={"limit": 100})["import_errors"]

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
        return self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})

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
    ) -> dict[str, Any]:
        """Start a DAG run; returns the DAGRunResponse (its `dag_run_id`, `state`, ...).

        `logical_date=None` starts a run with no logical date (Airflow 3 allows it); a date
        means its midnight UTC, i.e. the run for that day under CronTriggerTimetable.
        """
        body: dict[str, Any] = {"logical_date": _iso(logical_date), "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        if note:
            body["note"] = note
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)

    def clear_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """Clear a run: its tasks run again (tasks it lacks, e.g. after a DAG change, are created)."""
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/clear", json={"dry_run": False})

    def delete_run(self, dag_id: str, run_id: str) -> None:
        self.request("DELETE", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def get_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def list_runs(
        self, dag_id: str = "~", state: str | Iterable[str] | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest runs first; dag_id "~" lists runs of every DAG."""
        params: dict[str, Any] = {"limit": limit, "order_by": "-run_after"}
        if state:
            params["state"] = [state] if isinstance(state, str) else list(state)
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.request("GET", path, params={"limit": 1000})["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The log of one try of one task instance, one line per event."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        # Airflow 3 answers JSON (structured events) or NDJSON, not text/plain.
        body = self.request("GET", path, params={"full_content": True, "map_index": map_index})
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


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)
