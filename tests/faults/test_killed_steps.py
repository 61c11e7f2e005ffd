"""Each writing step killed with SIGKILL at the moments of its commit, then rerun (ingestion: tests/integration/test_faults.py).

A partition is committed by its manifest (jobs/lake.py: data files first, the manifest last, stale files
deleted after). Each step runs as its own process (`python -m jobs.<step>`, as Airflow runs it) on a copy of
a real lake and is killed, by tests/crash.py, just before a manifest is put (its data files are written),
or just after (before the stale files are deleted). After each kill every partition a reader sees reads
whole, and a partition whose manifest was not put is not seen; then the same command runs again, undisturbed,
and writes exactly what an undisturbed run writes (checksums of the rows).
"""
from __future__ import annotations

import datetime as dt
import shutil

import pytest

from tests.crash import KILLED, KillAt, checksum, data_files, run_step, step_env, visible_partitions_are_whole

pytestmark = pytest.mark.faults

MANIFEST = "_manifest.json"
DAYS = ("2013-01-07", "2013-01-08")


def _kills_then_rerun(module, args, env, kills, check_after_kill, timeout=600):
    for kill in kills:
        code, err = run_step(module, args, env, kill=kill, timeout=timeout)
        assert code == KILLED, f"{module} was not killed {kill}: exit {code}\n{err}"
        check_after_kill(kill)
    code, err = run_step(module, args, env, timeout=timeout)
    assert code == 0, f"{module} rerun: exit {code}\n{err}"


@pytest.mark.timeout(1200)
def test_features_killed_mid_commit(served_copy, served_model):
    from jobs.features import features_key
    from jobs.lake import Lake

    reference = Lake(served_model["lake_root"])
    keys = [features_key(ds) for ds in DAYS]
    expected = {key: checksum(reference, key) for key in keys}
    lake = served_copy["lake"]
    for key in keys:  # a first write of both dates: nothing was ever visible there
        lake._store.delete(lake.list(key))

    def check(kill):
        visible = visible_partitions_are_whole(lake, keys)
        if kill.when == "before":
            # The data files of the date being committed are written; the date is not visible.
            assert visible == keys[:kill.nth - 1], (kill, visible)
            assert data_files(lake, keys[kill.nth - 1]), f"{kill}: no data file written before the kill"
        else:
            assert visible == keys[:kill.nth], (kill, visible)
        for key in visible:
            assert checksum(lake, key) == expected[key], f"{key} differs from an undisturbed run's"

    _kills_then_rerun("jobs.features", ["--ds", DAYS[0], "--days", "2", "--force"], step_env(lake.root),
                      [KillAt("before", MANIFEST, 2), KillAt("after", MANIFEST, 2)], check)
    assert visible_partitions_are_whole(lake, keys) == keys
    assert {key: checksum(lake, key) for key in keys} == expected
    for key in keys:  # the rerun leaves exactly its own files: what the killed runs wrote is gone
        assert data_files(lake, key) == [f"{key}/{name}" for name in lake.read_manifest(key)["files"]]


@pytest.mark.timeout(1200)
def test_training_set_killed_mid_commit(served_copy, served_model, tmp_path):
    from jobs.lake import Lake
    from jobs.training_set import SPLITS, Windows, build_training_set, training_set_key

    windows = Windows(dt.date(2013, 1, 2), dt.date(2013, 1, 6), dt.date(2013, 1, 7), dt.date(2013, 1, 8))
    shutil.copytree(served_model["lake_root"], tmp_path / "reference")
    reference = Lake(str(tmp_path / "reference"))
    built = build_training_set(reference, windows, settings=served_copy["settings"])
    keys = [training_set_key(built.set_id, split) for split in SPLITS]
    expected = {key: checksum(reference, key) for key in keys}
    lake = served_copy["lake"]
    assert not lake.list(keys[0].rsplit("/", 1)[0]), "the copy already holds the set"

    def check(kill):
        visible = visible_partitions_are_whole(lake, keys)
        assert visible == keys[:kill.nth - 1], (kill, visible)
        assert data_files(lake, keys[kill.nth - 1]), f"{kill}: no data file written before the kill"
        for key in visible:
            assert checksum(lake, key) == expected[key]

    args = ["--train-start", "2013-01-02", "--train-end", "2013-01-06", "--holdout-start", "2013-01-07",
            "--holdout-end", "2013-01-08"]
    _kills_then_rerun("jobs.training_set", args, step_env(lake.root),
                      [KillAt("before", MANIFEST, 1), KillAt("before", MANIFEST, 2)], check)
    assert visible_partitions_are_whole(lake, keys) == keys
    assert {key: checksum(lake, key) for key in keys} == expected
    assert ({key: lake.read_manifest(key)["metadata"]["content_sha256"] for key in keys}
            == {key: reference.read_manifest(key)["metadata"]["content_sha256"] for key in keys})


@pytest.mark.timeout(1200)
def test_scoring_killed_mid_commit(served_copy, tmp_path, spark):
    from jobs.lake import Lake
    from jobs.score import predictions_key, score_dates
    from tests.unit.conftest import settings_with

    lake, uri = served_copy["lake"], served_copy["tracking_uri"]
    shutil.copytree(lake.root, tmp_path / "reference")
    reference = Lake(str(tmp_path / "reference"))
    score_dates(reference, dt.date.fromisoformat(DAYS[0]), 2, settings=settings_with(uri, reference.root), spark=spark)
    keys = [predictions_key(ds) for ds in DAYS]
    volatile = ("scored_at",)
    expected = {key: checksum(reference, key, volatile) for key in keys}

    def check(kill):
        visible = visible_partitions_are_whole(lake, keys)
        assert visible == keys[:kill.nth - (kill.when == "before")], (kill, visible)
        if kill.when == "before":
            assert data_files(lake, keys[kill.nth - 1]), f"{kill}: no data file written before the kill"
        for key in visible:
            assert checksum(lake, key, volatile) == expected[key]

    _kills_then_rerun("jobs.score", ["--ds", DAYS[0], "--days", "2"], step_env(lake.root, MLFLOW_TRACKING_URI=uri),
                      [KillAt("before", MANIFEST, 2), KillAt("after", MANIFEST, 2)], check)
    assert {key: checksum(lake, key, volatile) for key in keys} == expected
    assert {lake.read_manifest(key)["metadata"]["model_version"] for key in keys} == {served_copy["version"]}


@pytest.mark.timeout(900)
def test_model_card_killed_mid_write(served_copy, tmp_path):
    """jobs.evaluate writes the card's page and its JSON; the model-health view shows a card when its JSON is
    there (jobs/health.py) and links the page: the JSON must never be there without the page."""
    from jobs.evaluate import evaluate_version, model_card_key
    from jobs.lake import Lake
    from tests.unit.conftest import settings_with

    lake, uri, version = served_copy["lake"], served_copy["tracking_uri"], served_copy["version"]
    shutil.copytree(lake.root, tmp_path / "reference")
    shutil.copy(served_copy["db"], tmp_path / "reference.db")
    reference = Lake(str(tmp_path / "reference"))
    evaluate_version(version, settings=settings_with(f"sqlite:///{tmp_path / 'reference.db'}", reference.root),
                     lake=reference)
    key = model_card_key("flight_delay", version)

    def card(of: Lake) -> dict:
        return {k: v for k, v in of.read_json(f"{key}/model_card.json").items() if k != "generated_at"}

    expected = card(reference)

    def check(kill):
        names = {k.rsplit("/", 1)[-1] for k in lake.list(key)}
        assert names, f"{kill}: nothing written before the kill"
        if "model_card.json" in names:
            assert "model_card.html" in names, f"{kill}: the card's JSON is visible without its page"
            assert card(lake) == expected

    _kills_then_rerun("jobs.evaluate", ["--version", version], step_env(lake.root, MLFLOW_TRACKING_URI=uri),
                      [KillAt("after", "model_card.json"), KillAt("after", "model_card.html")], check)
    assert card(lake) == expected
    assert lake.read_bytes(f"{key}/model_card.html").decode().count(f"version {version}") >= 1


@pytest.mark.timeout(1800)
def test_replay_report_killed_mid_write(served_copy, tmp_path, spark):
    """jobs.replay_report writes the chart, the page, then the JSON the model-health view reads: killed after
    each of the first two, the JSON is never there without its page and chart, and the rerun writes the same
    evidence as an undisturbed run (on a copy of the same lake and registry)."""
    from jobs.replay_report import replay_key
    from jobs.score import score_dates
    from scripts.replay import SHORT_WINDOW_ENV

    lake, uri, days = served_copy["lake"], served_copy["tracking_uri"], ["2013-01-07", "2013-01-08"]
    # What the live loop served on those days: the champion's scores.
    score_dates(lake, dt.date.fromisoformat(days[0]), 2, settings=served_copy["settings"], spark=spark)
    shutil.copytree(lake.root, tmp_path / "reference")
    shutil.copy(served_copy["db"], tmp_path / "reference.db")
    module, env = "tests.faults.replay_report_days", dict(SHORT_WINDOW_ENV)
    code, err = run_step(module, days, step_env(str(tmp_path / "reference"),
                                                MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'reference.db'}", **env),
                         timeout=900)
    assert code == 0, err

    def evidence(root) -> dict:
        import json

        from jobs.lake import Lake

        summary = Lake(str(root)).read_json(replay_key(2013, "replay.json"))
        # The backtests' report links name the lake they are in.
        return json.loads(json.dumps({k: v for k, v in summary.items() if k != "generated_at"}).replace(str(root), "LAKE"))

    expected = evidence(tmp_path / "reference")
    assert [row["period"] for row in expected["by_period"]] == days and expected["first_champion"] == "1"

    def check(kill):
        names = {k.rsplit("/", 1)[-1] for k in lake.list(replay_key(2013))}
        assert "replay.png" in names, f"{kill}: nothing written before the kill"
        if "replay.json" in names:
            assert {"replay.html", "replay.png"} <= names, f"{kill}: the evidence's JSON without its page or chart"

    _kills_then_rerun(module, days, step_env(lake.root, MLFLOW_TRACKING_URI=uri, **env),
                      [KillAt("after", "replay.png"), KillAt("after", "replay.html")], check, timeout=900)
    assert evidence(lake.root) == expected
