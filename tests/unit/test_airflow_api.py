"""The REST client against a real HTTP server on loopback that answers like Airflow's API server."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tenacity import wait_none

from scripts import airflow_api
from scripts.airflow_api import AirflowAPIError, AirflowClient

# What Airflow 3.3's SQLAlchemyErrorHandler answers (HTTPException(500, detail={...})): the year
# replay stopped on one, because the client looked for "reason" at the top level and never retried.
DATABASE_ERROR = {"detail": {
    "reason": "Database error",
    "statement": "hidden",
    "orig_error": "hidden",
    "message": "Serious error when handling your request. Check logs for more details",
}}


class FakeAirflow(ThreadingHTTPServer):
    """Answers /auth/token, then plays `answers` (status, body) in order for every other call."""

    def __init__(self, answers: list[tuple[int, dict]]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = list(answers)
        self.calls: list[tuple[str, str, dict | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeAirflow

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        if self.path == "/auth/token":
            self._answer(201, {"access_token": "token"})
            return
        self.server.calls.append((self.command, self.path, body))
        self._answer(*self.server.answers.pop(0))

    do_GET = do_POST = do_PATCH = _handle


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    monkeypatch.setattr(airflow_api, "RETRY_WAIT", wait_none())
    servers: list[FakeAirflow] = []

    def start(answers: list[tuple[int, dict]]) -> FakeAirflow:
        server = FakeAirflow(answers)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_database_error_is_retried_and_the_trigger_goes_through(serve) -> None:
    server = serve([(500, DATABASE_ERROR), (500, DATABASE_ERROR), (200, {"dag_run_id": "r1", "state": "queued"})])
    with AirflowClient(server.url, "admin", "pw") as client:
        run = client.trigger("replay_publisher", conf={"days": 1}, run_id="r1")
    assert run["dag_run_id"] == "r1"
    assert [call[:2] for call in server.calls] == [("POST", "/api/v2/dags/replay_publisher/dagRuns")] * 3
    assert all(call[2]["conf"] == {"days": 1} for call in server.calls), "every try sends the same body"


def test_a_database_error_that_persists_is_raised_after_the_last_try(serve) -> None:
    server = serve([(500, DATABASE_ERROR)] * airflow_api.RETRY_ATTEMPTS)
    with AirflowClient(server.url, "admin", "pw") as client, pytest.raises(AirflowAPIError) as raised:
        client.get_dag("flights_ingest")
    assert raised.value.status_code == 500 and "Database error" in str(raised.value)
    assert len(server.calls) == airflow_api.RETRY_ATTEMPTS


@pytest.mark.parametrize("status, body", [(500, {"detail": "boom"}), (409, {"detail": "run exists"}), (422, {"detail": "bad"})])
def test_other_errors_are_raised_at_once_with_the_servers_detail(serve, status: int, body: dict) -> None:
    server = serve([(status, body)])
    with AirflowClient(server.url, "admin", "pw") as client, pytest.raises(AirflowAPIError) as raised:
        client.trigger("flights_ingest")
    assert raised.value.status_code == status and body["detail"] in str(raised.value)
    assert len(server.calls) == 1


def test_filters_reach_the_server_as_airflow_reads_them(serve) -> None:
    """The official client builds the query: repeated keys for lists, ISO moments with their zone."""
    import datetime as dt
    from urllib.parse import parse_qs, urlsplit

    server = serve([(200, {"dag_runs": [], "total_entries": 0})] * 2 + [(200, {"value": [{"retrain": True}]})])
    with AirflowClient(server.url, "admin", "pw") as client:
        client.list_runs("delay_model_training", state=["queued", "running"], limit=1)
        client.runs_at("flights_ingest", dt.date(2013, 3, 1))
        assert client.xcom_value("delay_model_monitoring", "scheduled__x", "monitor") == [{"retrain": True}]
    (listing, at, xcom) = [urlsplit(call[1]) for call in server.calls]
    assert listing.path == "/api/v2/dags/delay_model_training/dagRuns"
    assert parse_qs(listing.query) == {"limit": ["1"], "order_by": ["-run_after"], "state": ["queued", "running"]}
    moments = parse_qs(at.query)
    assert {k: [dt.datetime.fromisoformat(v) for v in vs] for k, vs in moments.items()} == {
        key: [dt.datetime(2013, 3, 1, tzinfo=dt.timezone.utc)] for key in ("logical_date_gte", "logical_date_lte")}
    assert xcom.path == "/api/v2/dags/delay_model_monitoring/dagRuns/scheduled__x/taskInstances/monitor/xcomEntries/return_value"
