"""Which model serves: `flight_delay@champion` resolved to a version, and that version as a Spark UDF.

Scoring (jobs.score), monitoring (jobs.monitor) and backtests (jobs.backtest) resolve and load the
served model through here: a missing champion is NothingToScore (a skip: nothing serves yet), a
champion that cannot be served is ChampionUnusable (a rejection naming the version).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from pyspark.sql import SparkSession


class NothingToScore(RuntimeError):
    """No champion, or no features: a skip with its reason."""


class ChampionUnusable(RuntimeError):
    """The champion alias names a version that cannot be served."""


@dataclass(frozen=True)
class ServingModel:
    name: str
    version: str
    run_id: str
    threshold: float

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def resolve_champion(mlflow_client: "MlflowClient", name: str, threshold: float) -> ServingModel:
    """The version `champion` names now. NothingToScore without one; ChampionUnusable when it is gone."""
    from mlflow.exceptions import MlflowException

    from jobs.registry import CHAMPION

    try:
        version = mlflow_client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        if code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE") \
                and "not found" not in str(exc).lower():
            raise
        last = _last_champion(mlflow_client, name)
        if last:
            # MLflow drops the aliases of a deleted version: a champion that was, and is gone.
            raise ChampionUnusable(
                f"{name} has no {CHAMPION} alias although version {last} was made champion: that version was "
                f"deleted (MLflow removes its aliases) or the alias was removed. Roll back with "
                f"delay_model_rollback or promote a version (python -m jobs.registry promote).") from exc
        raise NothingToScore(f"no {name}@{CHAMPION} yet: nothing serves predictions until a training run "
                             f"promotes a model") from exc
    if version.status not in (None, "READY"):
        raise ChampionUnusable(f"{name}@{CHAMPION} is version {version.version}, whose status is {version.status}")
    return ServingModel(name, str(version.version), version.run_id, threshold)


def _last_champion(mlflow_client: "MlflowClient", name: str) -> str | None:
    """The version jobs.registry last made champion (registered-model tag), if any."""
    from mlflow.exceptions import MlflowException

    from jobs.registry import CHAMPION_TAG

    try:
        return (mlflow_client.get_registered_model(name).tags or {}).get(CHAMPION_TAG)
    except MlflowException:
        return None  # no such model yet


def serving_udf(spark: "SparkSession", model: ServingModel):
    """The model as a Spark pandas UDF; ChampionUnusable (naming the version) when it cannot be loaded."""
    import mlflow

    try:
        return mlflow.pyfunc.spark_udf(spark, model.uri, result_type="double", env_manager="local")
    except Exception as exc:  # noqa: BLE001 - deleted version, missing artifact, unreadable model alike
        raise ChampionUnusable(f"{model.name}@champion is version {model.version} (run {model.run_id}), which cannot "
                               f"be loaded: {type(exc).__name__}: {str(exc)[:300]}. Roll back with "
                               f"delay_model_rollback or promote another version.") from exc


def model_inputs(model_uri: str) -> list[tuple[str, str]]:
    """(column, MLflow type) of the model's input signature, in order."""
    from mlflow.models import get_model_info

    schema = get_model_info(model_uri).signature.inputs
    return [(spec.name, spec.type.name) for spec in schema.inputs]
