"""The model registry's aliases: who serves (`champion`), who is new (`challenger`), who to go back to (`previous`).

    python -m jobs.registry status                       # the three aliases and their versions
    python -m jobs.registry promote --version 7 --reason "gate passed ..."
    python -m jobs.registry rollback --reason "bad predictions since 03-05"

Rules (DESIGN.md, "Model"):
- every candidate becomes a version with alias `challenger` (jobs.train registers it);
- `promote` moves `champion` to the version and the old champion to `previous`; promoting
  the current champion again changes nothing;
- `rollback` moves `champion` back to `previous` and `previous` to the version rolled back
  from (so a second rollback undoes the first); without a `previous` it fails and changes
  nothing.
Each change is recorded on the versions as tags (`promoted_at`, `promotion_reason`,
`rolled_back_at`, `rollback_reason`, `replaced_by`) and logged, so the registry page of
MLflow shows who served when and why.

MLflow unreachable: the command fails (exit 1, retried by Airflow with backoff) with a
message naming the tracking URI, before any alias is touched.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from jobs.cli import model_version, step_parser
from jobs.results import EXIT_OK, EXIT_REJECTED, emit_result

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from jobs.retrain import RetrainDecision, TrainingHistory
    from jobs.settings import Settings

log = logging.getLogger("jobs.registry")

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)
# Registered-model tag: the version `champion` was last set to by promote/rollback.
CHAMPION_TAG = "champion_version"


class RegistryError(RuntimeError):
    """A registry change that cannot be made (nothing to roll back to, unknown version)."""


class MlflowUnreachable(RuntimeError):
    """The tracking server did not answer: names its URI."""


@dataclass(frozen=True)
class AliasChange:
    action: str
    model: str
    champion: str | None
    previous: str | None
    from_version: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def limit_http_retries() -> None:
    """Cap MLflow's own HTTP retries (default: 7 with backoff, minutes of waiting) unless set.

    A step that cannot reach MLflow should fail within seconds and let Airflow retry it with
    its backoff, where the attempt and the error are visible.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


def client(tracking_uri: str | None = None) -> "MlflowClient":
    """An MlflowClient that has answered once (so a dead server fails here, naming its URI)."""
    limit_http_retries()
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri or mlflow.get_tracking_uri()
    mlflow_client = MlflowClient(tracking_uri=uri)
    try:
        mlflow_client.search_registered_models(max_results=1)
    except Exception as exc:  # noqa: BLE001 - requests' and MLflow's errors alike
        raise MlflowUnreachable(f"MLflow tracking server {uri} is unreachable or failing: "
                                f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    return mlflow_client


def alias_version(mlflow_client: "MlflowClient", name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow_client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None  # no such alias (or no such model yet)


def aliases(mlflow_client: "MlflowClient", name: str) -> dict[str, str | None]:
    return {alias: alias_version(mlflow_client, name, alias) for alias in ALIASES}


def training_history(mlflow_client: "MlflowClient", name: str) -> "TrainingHistory":
    """The champion's and the newest version's data ends (their runs' `window.holdout_end` tags)."""
    from jobs.retrain import TrainingHistory

    # Versions a backtest trained (jobs.backtest tags them) never served and are no attempt to serve.
    versions = [v for v in mlflow_client.search_model_versions(f"name = '{name}'")
                if (v.tags or {}).get("purpose") != "backtest"]
    if not versions:
        return TrainingHistory()
    champion = alias_version(mlflow_client, name, CHAMPION)
    newest = max(versions, key=lambda v: int(v.version))

    def through(version: Any) -> dt.date | None:
        end = mlflow_client.get_run(version.run_id).data.tags.get("window.holdout_end") if version.run_id else None
        return dt.date.fromisoformat(end) if end else None

    by_number = {str(v.version): v for v in versions}
    tags = newest.tags or {}
    return TrainingHistory(
        champion_version=champion,
        champion_through=through(by_number[champion]) if champion in by_number else None,
        newest_version=str(newest.version), newest_through=through(newest),
        newest_promoted=str(newest.version) == champion or ("promoted_at" in tags and "rolled_back_at" not in tags))


def training_log(mlflow_client: "MlflowClient", name: str) -> list[dict[str, Any]]:
    """Every version the loop trained (not a backtest's), oldest first, with why and what became of it."""
    from jobs.retrain import started_on

    rows = []
    for version in sorted(mlflow_client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)):
        tags = version.tags or {}
        if tags.get("purpose") == "backtest":
            continue
        run_tags = mlflow_client.get_run(version.run_id).data.tags if version.run_id else {}
        airflow_run = run_tags.get("airflow.run_id", "")
        decided_on = started_on(airflow_run)
        started_on_ds = decided_on.isoformat() if decided_on else None
        rows.append({
            "version": str(version.version), "started_on": started_on_ds,
            "trigger": "monitoring" if started_on_ds else ("schedule" if airflow_run.startswith("scheduled__")
                                                        else "manual"),
            "reason": run_tags.get("reason", ""),
            "window": {k.removeprefix("window."): v for k, v in run_tags.items() if k.startswith("window.")},
            "gate_passed": tags.get("gate_passed") == "true" if "gate_passed" in tags else None,
            "gate_reasons": tags.get("gate_reasons", ""),
            "promoted": "promoted_at" in tags, "promoted_at": tags.get("promoted_at"),
            "family": run_tags.get("family"),
        })
    return rows


def scheduled_training_decision(ds: dt.date, settings: "Settings | None" = None) -> "RetrainDecision":
    """The retraining policy's decision for the scheduled training run of flight date `ds` (its model-age rule)."""
    from jobs.retrain import RetrainEvidence, decide_retraining
    from jobs.settings import get_settings

    settings = settings or get_settings()
    history = training_history(client(settings.mlflow.tracking_uri), settings.mlflow.model_name)
    return decide_retraining(RetrainEvidence(ds=ds, source="schedule", history=history), settings.retraining)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def promote(mlflow_client: "MlflowClient", name: str, version: str, reason: str) -> AliasChange:
    """`champion` -> version, old champion -> `previous`."""
    version = str(version)
    mlflow_client.get_model_version(name, version)  # fails naming it when it does not exist
    old = alias_version(mlflow_client, name, CHAMPION)
    if old == version:
        log.info("%s version %s is already the champion", name, version)
        return AliasChange("promote", name, version, alias_version(mlflow_client, name, PREVIOUS), old, reason)
    if old is not None:
        mlflow_client.set_registered_model_alias(name, PREVIOUS, old)
        mlflow_client.set_model_version_tag(name, old, "replaced_by", version)
    mlflow_client.set_registered_model_alias(name, CHAMPION, version)
    # On the model, not the version: it outlives a deleted version (whose aliases MLflow drops),
    # so scoring can tell "the champion is gone" from "no champion yet".
    mlflow_client.set_registered_model_tag(name, CHAMPION_TAG, version)
    mlflow_client.set_model_version_tag(name, version, "promoted_at", _now())
    mlflow_client.set_model_version_tag(name, version, "promotion_reason", reason[:5000])
    log.info("%s: champion %s -> %s (previous: %s). %s", name, old, version, old, reason)
    return AliasChange("promote", name, version, old, old, reason)


APPROVAL_OUTCOMES = ("approved", "rejected", "timed_out", "failed")


def approval_outcome(answer: Any, error: BaseException | None) -> tuple[str, str | None, str | None, str]:
    """(outcome, by, at, detail) from the approve task's result or its error."""
    if answer:
        chosen = (answer.get("chosen_options") or ["?"])[0]
        user = answer.get("responded_by_user") or {}
        outcome = {"Approve": "approved", "Reject": "rejected"}.get(chosen, "failed")
        return outcome, user.get("name"), str(answer.get("responded_at") or "") or None, f"chose {chosen}"
    text = f"{type(error).__name__}: {error}" if error is not None else "no answer"
    return ("timed_out" if "timeout" in text.lower() or "timed out" in text.lower() else "failed"), None, None, text


def record_approval(mlflow_client: "MlflowClient", name: str, version: str, outcome: str, by: str | None = None,
                    at: str | None = None, detail: str = "") -> dict[str, str]:
    """A person's answer to "promote this version?" (delay_model_training's `approve`), as tags on the version:
    `approval` (approved, rejected, timed_out, failed), `approval_by`, `approval_at`, `approval_detail`."""
    if outcome not in APPROVAL_OUTCOMES:
        raise RegistryError(f"unknown approval outcome {outcome!r}: one of {', '.join(APPROVAL_OUTCOMES)}")
    mlflow_client.get_model_version(name, str(version))  # fails naming it when it does not exist
    tags = {"approval": outcome, "approval_by": by or "-", "approval_at": at or _now(), "approval_detail": detail[:5000]}
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version), key, value)
    (log.info if outcome == "approved" else log.warning)("%s version %s: %s by %s at %s %s", name, version, outcome,
                                                          tags["approval_by"], tags["approval_at"], detail)
    return tags


def rollback(mlflow_client: "MlflowClient", name: str, reason: str) -> AliasChange:
    """`champion` -> `previous`, and `previous` -> the version rolled back from."""
    current = alias_version(mlflow_client, name, CHAMPION)
    previous = alias_version(mlflow_client, name, PREVIOUS)
    if previous is None or current is None:
        raise RegistryError(f"{name}: nothing to roll back to (champion {current}, previous {previous})")
    mlflow_client.set_registered_model_alias(name, CHAMPION, previous)
    mlflow_client.set_registered_model_tag(name, CHAMPION_TAG, previous)
    mlflow_client.set_registered_model_alias(name, PREVIOUS, current)
    mlflow_client.set_model_version_tag(name, current, "rolled_back_at", _now())
    mlflow_client.set_model_version_tag(name, current, "rollback_reason", reason[:5000])
    mlflow_client.set_model_version_tag(name, previous, "restored_at", _now())
    log.warning("%s: rolled back champion %s -> %s. %s", name, current, previous, reason)
    return AliasChange("rollback", name, previous, current, current, reason)


def main(argv: list[str] | None = None) -> int:
    from jobs.settings import get_settings

    parser = step_parser("jobs.registry", __doc__.split("\n\n")[0], "status", 'promote --version 7 --reason "gate passed"',
                         'rollback --reason "bad predictions since 03-05"')
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="print the aliases")
    up = commands.add_parser("promote", help="make a version the champion")
    up.add_argument("--version", required=True, type=model_version, help="the version to promote, e.g. 7")
    up.add_argument("--reason", required=True)
    back = commands.add_parser("rollback", help="champion back to previous")
    back.add_argument("--reason", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    settings = get_settings()
    name = settings.mlflow.model_name
    try:
        mlflow_client = client(settings.mlflow.tracking_uri)
    except MlflowUnreachable as exc:
        print(f"ERROR jobs.registry: {exc}", file=sys.stderr)
        return 1
    if args.command == "status":
        print(json.dumps({"model": name, **aliases(mlflow_client, name)}))
        return EXIT_OK
    try:
        change = (promote(mlflow_client, name, args.version, args.reason) if args.command == "promote"
                  else rollback(mlflow_client, name, args.reason))
    except RegistryError as exc:
        print(f"ERROR jobs.registry rejected: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    emit_result(change.to_json())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
