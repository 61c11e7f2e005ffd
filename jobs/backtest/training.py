"""The model of a training window: trained by jobs.train for the backtest, registered, never promoted."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from jobs.backtest.request import BacktestRequest, Plan
from jobs.lake import Lake

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from jobs.serving import ServingModel
    from jobs.settings import Settings

log = logging.getLogger("jobs.backtest")


def trained_model(lake: Lake, request: BacktestRequest, plan: Plan, settings: "Settings",
                  mlflow_client: "MlflowClient") -> tuple["ServingModel", dict[str, Any]]:
    """The version trained on the plan's windows for this request: reused when registered before, else
    trained by jobs.train and tagged; `challenger` is put back as it was (module docstring, step 1)."""
    from jobs.registry import CHALLENGER, alias_version
    from jobs.serving import ServingModel
    from jobs.train import TrainRequest, train_candidate

    name, defaults = settings.mlflow.model_name, settings.training
    for found in mlflow_client.search_model_versions(f"name = '{name}'"):
        if (found.tags or {}).get("backtest_train_key") == plan.train_key and found.status in (None, "READY"):
            log.info("reusing %s version %s, trained before for the same request (key %s)", name, found.version,
                     plan.train_key)
            return (ServingModel(name, str(found.version), found.run_id, defaults.decision_threshold),
                    {"reused": True, "version": str(found.version), "run_id": found.run_id})
    train_request = TrainRequest(
        plan.windows, request.family or defaults.family, defaults.epochs, defaults.batch_size,  # type: ignore[arg-type]
        defaults.learning_rate, defaults.seed if request.seed is None else request.seed, defaults.use_gpu,
        reason=f"backtest {plan.backtest_id} (not promoted){': ' + request.reason if request.reason else ''}")
    challenger = alias_version(mlflow_client, name, CHALLENGER)
    try:
        result = train_candidate(train_request, settings=settings, lake=lake)
    finally:
        if alias_version(mlflow_client, name, CHALLENGER) != challenger:
            if challenger is None:
                mlflow_client.delete_registered_model_alias(name, CHALLENGER)
            else:
                mlflow_client.set_registered_model_alias(name, CHALLENGER, challenger)
            log.info("%s alias put back to %s: a backtest model is never a candidate", CHALLENGER, challenger)
    version = result["model_version"]
    for key, value in (("purpose", "backtest"), ("backtest_train_key", plan.train_key),
                       ("backtest_id", plan.backtest_id)):
        mlflow_client.set_model_version_tag(name, version, key, value)
    return (ServingModel(name, version, result["run_id"], defaults.decision_threshold),
            {"reused": False, **{k: result[k] for k in ("run_id", "model_version", "set_id", "valid_auc", "rows")}})

