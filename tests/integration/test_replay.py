"""A short replay through a real stack (Airflow's scheduler, triggerer and API server, a real `mlflow
server`, Spark Connect, the warm step runner), driven by scripts/replay/'s own clock:

1. the first model: Jan 1-12 delivered, the scheduler's catch-up ingests and builds them, one
   training makes the first champion, one range run scores the month;
2. the clock delivers four days at a time from Jan 13 (`--stretch 4`: ingestion, features and
   scoring of a stretch run side by side, monitoring in order). Upstream's forecasts for Jan 15-17 carry a July
   (temperature, dewpoint, humidity shifted as the season shifts them), so monitoring sees
   dataset drift: on the second drifted day, Jan 16 (the policy here: `drift_days` 2,
   `cooldown_days` 4 from the first champion's data end, Jan 12: the first model's
   delivery carries the outcomes of its last day), it starts exactly one
   `delay_model_training`; the drift goes on, and the new champion's cooldown (or a rejected
   candidate's retry wait) holds the later day;
3. the replay is interrupted in the middle of a stretch (Ctrl-C while it waits for Jan 14) and a
   new driver resumes from the state file, from Jan 14: every day is closed once, every written
   partition is whole;
4. every prediction carries the version that served at the start of its day: the first
   champion until the day after the day that started the training, then the new one (if the
   gate promoted it): Jan 17 was scored ahead by the first champion, and the promotion rescored it.
The model family is HGB and the windows are small (twelve days), the policy is settings; nothing
else differs from `make replay`.
"""
from __future__ import annotations

import datetime as dt
import json

import pytest
from mlflow import MlflowClient

from jobs.lake import Lake, landing_key
from jobs.upstream.publish import feed_frame
from scripts.replay import SHORT_WINDOW_ENV, Replay, ReplayState, replay_env
from tests.integration.stack import IntegrationStack

pytestmark = pytest.mark.integration

FIRST, FIRST_MODEL_DAYS, LAST = dt.date(2013, 1, 1), 12, dt.date(2013, 1, 17)
FIRST_TICK = FIRST + dt.timedelta(days=FIRST_MODEL_DAYS)  # monitoring's first day: the first champion's first served
STRETCH = 4
SUMMER = [dt.date(2013, 1, 15) + dt.timedelta(days=i) for i in range(3)]
POLICY = {
    **SHORT_WINDOW_ENV,
    "PIPELINE__TRAINING__FAMILY": "sklearn_hgb",
    "PIPELINE__RETRAINING__DRIFT_DAYS": "2",
    "PIPELINE__RETRAINING__COOLDOWN_DAYS": "4",
    # Twelve days of training make a weak model: its served AUC is not what this test is about.
    "PIPELINE__RETRAINING__SERVED_AUC_FLOOR": "0.5",
    # Three weather columns of the eighteen watched move here (a real July moves the traffic mix too).
    "PIPELINE__MONITORING__DRIFT_SHARE": "0.15",
}


def python_daemons(port: int) -> list[int]:
    """The live Python worker daemons (and workers) of the Spark Connect server listening on `port`; one that
    was stopped a moment ago is given 30 s to exit (a zombie not yet reaped by the server holds nothing)."""
    import time

    import psutil

    def alive(process: psutil.Process) -> bool:
        try:
            return process.status() != psutil.STATUS_ZOMBIE and "pyspark.worker" in " ".join(process.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False

    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "SparkConnectServer" in cmdline and f"spark.connect.grpc.binding.port={port}" in cmdline:
            deadline = time.monotonic() + 30
            while True:
                daemons = [child.pid for child in process.children(recursive=True) if alive(child)]
                if not daemons or time.monotonic() > deadline:
                    return daemons
                time.sleep(1)
    raise AssertionError(f"no Spark Connect server on port {port}")


def deliver_a_summer_forecast(lake: Lake, day: dt.date) -> None:
    """Upstream's forecast of a January day with July's weather; the replay's delivery keeps it."""
    weather = feed_frame("weather", day)
    weather["temp"] = weather["temp"] + 45.0
    weather["dewp"] = weather["dewp"] + 40.0
    weather["humid"] = (weather["humid"] + 25.0).clip(upper=100.0)
    lake.write_bytes(landing_key("weather", day.isoformat()), weather.to_csv(index=False).encode())


def assert_openlineage_has_the_lineage_of(lake: Lake, ds: str, stack: IntegrationStack) -> None:
    """Every link of a day's lineage (landing -> raw -> features -> predictions <- model <- training set <-
    features) is an edge of the OpenLineage events the stack's tasks emitted (file transport)."""
    from jobs.lineage import lineage
    from jobs.lineage_events import dataset_of_uri, model_dataset
    from jobs.settings import get_settings
    from tests.openlineage_events import completed_tasks, edges, read_events

    events = read_events(stack.config.openlineage_dir)
    graph_edges = edges(events)
    settings = get_settings()
    graph = lineage(lake, ds, settings=settings, mlflow_client=MlflowClient(stack.config.mlflow_url))
    model = graph["model"]
    model_ds = model_dataset(stack.config.mlflow_url, model["name"], model["version"])
    predictions, features = dataset_of_uri(graph["predictions"]["uri"]), dataset_of_uri(graph["features"]["uri"])
    wanted = [(features, predictions), (model_ds, predictions)]
    wanted += [(dataset_of_uri(part["uri"]), model_ds) for part in model["training_set_partitions"].values()]
    for raw in graph["raw"]:
        wanted.append((dataset_of_uri(raw["uri"]), features))
        if raw["landing"]:
            wanted.append((dataset_of_uri(raw["landing"]["uri"]), dataset_of_uri(raw["uri"])))
    missing = [edge for edge in wanted if edge not in graph_edges]
    tasks = completed_tasks(events)
    assert not missing, (missing, sorted(tasks))
    assert all(event["job"]["namespace"] == "flight_delay_pipeline" for event in events)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C in the middle of a day: after its delivery, before its loop closed."""


@pytest.mark.timeout(2400)  # about 7 minutes on an idle 2-core machine: a month of days through the scheduler
def test_a_short_replay_retrains_once_on_drift_and_resumes_after_an_interruption(tmp_path, monkeypatch):
    for key, value in POLICY.items():
        monkeypatch.setenv(key, value)  # the stack's components inherit them; so does this process
    lake = Lake(str(tmp_path / "lake"))
    for day in SUMMER:
        deliver_a_summer_forecast(lake, day)
    state_file = tmp_path / "state.json"
    with IntegrationStack(tmp_path, lake_root=lake.root, extra_env=replay_env(FIRST, LAST, FIRST_TICK), spark_connect=True,
                          warm_runner=True) as stack:
        client = stack.client()
        client.wait_for_dags(["replay_publisher", "flights_ingest", "delay_model_monitoring"], timeout=300)
        client.unpause("replay_publisher")
        state = ReplayState(FIRST.isoformat(), LAST.isoformat(), FIRST_MODEL_DAYS)
        replay = Replay(client, state, state_file, timeout=900)
        replay.first_model()
        assert state.next_day == "2013-01-13"

        # Interrupt the first stretch (Jan 13-16) while it waits for Jan 14; a new driver picks up from the
        # state file: its stretch is Jan 14-17, so Jan 17 is scored ahead of Jan 16's training.
        close_day = replay.close_day

        def interrupt_at_the_second_day(day, started):
            if day == dt.date(2013, 1, 14):
                raise Interrupted()
            return close_day(day, started)

        monkeypatch.setattr(replay, "close_day", interrupt_at_the_second_day)
        with pytest.raises(Interrupted):
            replay.loop(stretch=STRETCH)
        saved = ReplayState.load(state_file)
        assert saved.next_day == "2013-01-14" and list(saved.days) == ["2013-01-13"]
        Replay(client, saved, state_file, timeout=900).loop(stretch=STRETCH)

        final = ReplayState.load(state_file)
        ticked = [(FIRST_TICK + dt.timedelta(days=i)).isoformat() for i in range((LAST - FIRST_TICK).days + 2)]
        assert list(final.days) == ticked, "every day closed once, in order, across the interruption"
        assert all(final.days[d]["monitoring"] == "success" for d in ticked[:-1])
        monitored_days = sorted(r["logical_date"][:10] for r in client.list_runs("delay_model_monitoring", limit=50))
        assert monitored_days[0] == FIRST_TICK.isoformat(), "monitoring starts with the first champion's first day"

        # Exactly one training started by monitoring, on the second drifted day.
        started = sorted(r["dag_run_id"] for r in client.list_runs("delay_model_training", limit=20)
                         if r["dag_run_id"].startswith("monitoring__"))
        assert started == ["monitoring__2013-01-16"], started
        # Started with the reason, the evidence and the windows up to the last labelled day (a 3-day holdout here),
        # and waited for by the monitoring run that started it.
        conf = client.get_run("delay_model_training", "monitoring__2013-01-16")["conf"]
        assert conf["reason"].startswith("delay_model_monitoring 2013-01-16: retrain: dataset drift"), conf
        assert (conf["train_start"], conf["train_end"], conf["holdout_start"], conf["holdout_end"]) == (
            "2013-01-01", "2013-01-12", "2013-01-13", "2013-01-15"), conf
        assert conf["evidence"]["dataset_drift"] is True and {"temp", "dewp"} <= set(conf["evidence"]["drifted_columns"])
        monitored = {t["task_id"]: t["state"] for t in client.task_instances(
            "delay_model_monitoring", "scheduled__2013-01-16T03:00:00+00:00")}
        assert monitored["trigger_retraining"] == monitored["wait_for_retraining"] == "success", monitored
        assert lake.exists("reports/drift/2013-01-16/data_drift.html")
        decisions = {d: (final.days[d]["decision"] or {}) for d in ticked[:-1]}
        assert decisions["2013-01-16"]["retrain"] and "dataset drift on " in decisions["2013-01-16"]["decision"]
        assert "cooldown" in decisions["2013-01-15"]["decision"] or not decisions["2013-01-15"]["retrain"]
        for day in ("2013-01-17",):
            assert not decisions[day]["retrain"], decisions[day]
            if "although" in decisions[day]["decision"]:  # a reason held back (a new champion's streak restarts)
                assert "cooldown" in decisions[day]["decision"] or "retry wait" in decisions[day]["decision"], \
                    decisions[day]

        # Each day scored by the version serving at its start.
        mlflow_client = MlflowClient(stack.config.mlflow_url)
        aliases = mlflow_client.get_registered_model("flight_delay").aliases
        new = next(v for v in mlflow_client.search_model_versions("name = 'flight_delay'")
                   if v.tags.get("reason", "").startswith("delay_model_monitoring 2013-01-16"))
        promoted = aliases.get("champion") == new.version
        for offset in range((LAST - FIRST).days + 1):
            day = FIRST + dt.timedelta(days=offset)
            manifest = lake.read_manifest(f"predictions/flight_delay/date={day.isoformat()}")
            expected = new.version if promoted and day >= dt.date(2013, 1, 17) else "1"
            assert manifest["metadata"]["model_version"] == expected, (day, manifest["metadata"], promoted)
        rescoring = [r for r in client.list_runs("flights_batch_scoring", limit=50) if r["conf"].get("ahead_of")]
        assert [r["state"] for r in rescoring] == (["success"] if promoted else []), rescoring

        # The Spark Connect server keeps a Python worker daemon per client session that ran a UDF, and nothing in
        # Spark stops it with the session: the scoring steps stop theirs as they release it (jobs.spark), so the
        # many scoring runs of the replay leave none behind (a year's replay ran the machine out of memory).
        assert python_daemons(stack.config.spark_connect_port) == [], "a released session's Python daemon lives on"

        # Whole partitions only: every partition directory is committed by its manifest, no temp files.
        root = tmp_path / "lake"
        assert not list(root.rglob("*.tmp"))
        for data in root.rglob("*.parquet"):
            assert (data.parent / "_manifest.json").is_file(), data
        print(json.dumps({d: {k: v for k, v in r.items() if k != "decision"} for d, r in final.days.items()}))

        # Airflow's OpenLineage provider emitted the graph `python -m jobs.lineage` walks, link by link.
        assert_openlineage_has_the_lineage_of(lake, LAST.isoformat(), stack)

        # 5. The loop's evidence over two periods of the replay: live vs frozen vs calendar, same flights.
        from jobs.replay_report import build_report, replay_key
        from jobs.settings import get_settings

        monkeypatch.setenv("LAKE_ROOT", lake.root)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.config.mlflow_url)
        periods = [("early", dt.date(2013, 1, 13), dt.date(2013, 1, 14)),
                   ("summer", dt.date(2013, 1, 15), dt.date(2013, 1, 17))]
        report = build_report(lake, 2013, periods, settings=get_settings())
        assert [row["period"] for row in report["by_period"]] == ["early", "summer"]
        for row in report["by_period"]:
            assert row["rows"] > 1500 and all(0.5 < row[side] < 0.9 for side in ("live", "frozen", "calendar")), row
        assert report["by_period"][1]["trainings_started"] == 1 and report["by_period"][1]["dataset_drift_days"] >= 2
        started = [t for t in report["trainings"] if t["trigger"] == "monitoring"]
        assert [t["started_on"] for t in started] == ["2013-01-16"] and report["first_champion"] == "1"
        assert "dataset drift" in started[0]["reason"] and started[0]["gate_passed"] is not None
        for name in ("replay.json", "replay.html", "replay.png"):
            assert lake.exists(replay_key(2013, name)), name
        # Before any retraining the live loop served the first champion: the frozen backtest reproduces it.
        assert report["by_period"][0]["live"] == pytest.approx(report["by_period"][0]["frozen"], abs=1e-9)
        if report["by_period"][1]["live"] != report["by_period"][1]["frozen"]:
            assert promoted, "the live loop differs from the frozen model only after a promotion"
