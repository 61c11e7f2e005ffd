"""Alias moves (jobs/registry.py) on a real MLflow registry (SQLite backend)."""
from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from jobs.registry import MlflowUnreachable, RegistryError, aliases, client, promote, rollback


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> MlflowClient:
    """One SQLite registry for the module (creating one costs seconds); each test registers its own model."""
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}")


@pytest.fixture
def name(registry, tmp_path) -> str:
    """A registered model with versions 1, 2, 3."""
    model = f"flight_delay_{tmp_path.name}"
    registry.create_registered_model(model)
    for _ in range(3):
        registry.create_model_version(model, source=(tmp_path / "artifacts").as_uri())
    return model


def test_promote_moves_champion_and_keeps_the_old_one_as_previous(registry, name):
    first = promote(registry, name, "1", "first model")
    assert (first.champion, first.previous) == ("1", None)
    second = promote(registry, name, "2", "gate passed: 0.72 vs 0.70")
    assert (second.champion, second.previous) == ("2", "1")
    assert aliases(registry, name) == {"champion": "2", "challenger": None, "previous": "1"}
    assert registry.get_model_version(name, "2").tags["promotion_reason"] == "gate passed: 0.72 vs 0.70"
    assert registry.get_model_version(name, "1").tags["replaced_by"] == "2"
    # Promoting the champion again changes nothing.
    promote(registry, name, "2", "again")
    assert aliases(registry, name)["previous"] == "1"


def test_rollback_swaps_champion_and_previous_and_records_why(registry, name):
    promote(registry, name, "1", "first")
    promote(registry, name, "3", "better")
    change = rollback(registry, name, "predictions went bad on 2013-03-05")
    assert (change.champion, change.previous) == ("1", "3")
    assert aliases(registry, name)["champion"] == "1"
    tags = registry.get_model_version(name, "3").tags
    assert tags["rollback_reason"] == "predictions went bad on 2013-03-05" and "rolled_back_at" in tags
    rollback(registry, name, "undo")
    assert aliases(registry, name)["champion"] == "3"


def test_rollback_without_previous_changes_nothing(registry, name):
    promote(registry, name, "1", "first")
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(registry, name, "oops")
    assert aliases(registry, name)["champion"] == "1"


def test_promoting_an_unknown_version_fails(registry, name):
    with pytest.raises(mlflow.exceptions.MlflowException):
        promote(registry, name, "42", "typo")
    assert aliases(registry, name)["champion"] is None


def test_an_unreachable_server_is_named():
    with pytest.raises(MlflowUnreachable, match=r"http://127\.0\.0\.1:9 is unreachable"):
        client("http://127.0.0.1:9")


def test_an_approval_answer_is_recorded_on_the_version_and_moves_no_alias(registry, name):
    from jobs.registry import record_approval

    record_approval(registry, name, "2", "rejected", "alice", "2013-03-05T09:00:00+00:00", "chose Reject")
    tags = registry.get_model_version(name, "2").tags
    assert (tags["approval"], tags["approval_by"], tags["approval_detail"]) == ("rejected", "alice", "chose Reject")
    assert aliases(registry, name)["champion"] is None
    record_approval(registry, name, "3", "timed_out", detail="HITLTimeoutError: no answer in 3 days")
    assert registry.get_model_version(name, "3").tags["approval"] == "timed_out"
    with pytest.raises(RegistryError, match="unknown approval outcome 'maybe'"):
        record_approval(registry, name, "1", "maybe")
    with pytest.raises(Exception, match="9"):
        record_approval(registry, name, "9", "approved")
