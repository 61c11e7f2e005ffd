"""Train a candidate delay model and its HGB baseline, track both in MLflow, register the candidate as `challenger`.

    python -m jobs.train --start 2013-01-01 --end 2013-11-30 \
        --holdout-start 2013-12-01 --holdout-end 2013-12-31 [--family torch_mlp] [--epochs 20] \
        [--batch-size 1024] [--learning-rate 0.002] [--seed 13] [--no-gpu] [--reason "..."]

1. The training set of the windows (jobs.training_set: built by Spark, or reused when the
   same inputs built it before); the last `training.validation_days` of the training window
   are the early-stopping validation rows (by time: see jobs/model/training.py).
2. The candidate (`torch_mlp` on CUDA with mixed precision when there is a GPU, else CPU; or
   `sklearn_hgb`) in one MLflow run of the `training.experiment` experiment, and the
   HistGradientBoosting baseline on the same rows in a sibling run. Each run records its
   params, per-epoch curves (train/valid loss, valid AUC, samples/s), the dataset lineage
   (`mlflow.log_input` with the set's manifest), the git commit, the Airflow dag id / run id
   and the reason (free text, filled by monitoring when it triggers a retrain).
3. The candidate is logged as a pyfunc that carries its preprocessing (jobs/model/pyfunc.py) and
   registered as a new version of `mlflow.model_name` with alias `challenger`. Whether it
   becomes `champion` is for jobs.evaluate (the gate) and the promote step to decide.
4. The candidate's run also stores its drift reference (`reference/reference_sample.parquet`,
   jobs/drift.py): `monitoring.reference_rows` training rows stratified by flight date, as
   the model's inputs, with the label and the model's own probability on each; monitoring
   compares each served day with it.

Results go to MLflow and the lake; stdout carries one small line (jobs/results.py):
    STEP_RESULT {"run_id", "baseline_run_id", "model_version", "model_uri", "set_id", "device",
                 "samples_per_s", "valid_auc", "rows": {...}}
Exit codes: 0 trained; 2 bad arguments; 3 the windows give no usable training set (names
why: no labels, one class); 1 anything else, e.g. MLflow unreachable (named; Airflow retries).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.cli import step_parser
from jobs.feeds import LABEL
from jobs.lake import Lake
from jobs.registry import CHALLENGER, MlflowUnreachable, client
from jobs.results import EXIT_OK, EXIT_REJECTED, emit_result
from jobs.training_set import (
    TrainingSet, TrainingSetError, Windows, build_training_set, read_training_set,
    training_set_key,
)

if TYPE_CHECKING:
    import pandas as pd

    from jobs.settings import Settings

log = logging.getLogger("jobs.train")

FAMILIES = ("torch_mlp", "sklearn_hgb")
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """One training run's request: windows, model family, hyper-parameters, why, and which Airflow run asks.

    The one place a request is checked (`__post_init__`, every problem named at once): the CLI
    parses its flags into it, and `delay_model_training`'s `check_request` builds it from the
    run's Params (`from_params`) and hands the CLI its `argv()`.
    """

    windows: Windows
    family: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    use_gpu: bool
    reason: str = ""
    airflow_dag_id: str | None = None
    airflow_run_id: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.family not in FAMILIES:
            problems.append(f"family {self.family!r} is not one of {', '.join(FAMILIES)}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive (got {getattr(self, name)})")
        if not 0 < self.learning_rate < 1:
            problems.append(f"learning_rate must be in (0, 1) (got {self.learning_rate})")
        if self.seed < 0:
            problems.append(f"seed must not be negative (got {self.seed})")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_params(cls, windows: Windows, params: Mapping[str, Any], *, airflow_dag_id: str | None = None,
                    airflow_run_id: str | None = None) -> TrainRequest:
        """From a DAG run's Params (the trigger form's fields); an empty reason is a manual run's."""
        return cls(windows, str(params["family"]), int(params["epochs"]), int(params["batch_size"]),
                   float(params["learning_rate"]), int(params["seed"]), bool(params["use_gpu"]),
                   str(params.get("reason") or "manual"), airflow_dag_id, airflow_run_id)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainRequest:
        windows = Windows(args.train_start, args.train_end, args.holdout_start, args.holdout_end)
        return cls(windows, args.family, args.epochs, args.batch_size, args.learning_rate, args.seed, args.use_gpu,
                   args.reason, args.airflow_dag_id, args.airflow_run_id)

    def argv(self) -> list[str]:
        """The `python -m jobs.train` arguments of this request (`build_parser` reads them back into it)."""
        w = self.windows.to_json()
        argv = ["--start", w["train_start"], "--end", w["train_end"], "--holdout-start", w["holdout_start"],
                "--holdout-end", w["holdout_end"], "--family", self.family, "--epochs", str(self.epochs),
                "--batch-size", str(self.batch_size), "--learning-rate", repr(self.learning_rate),
                "--seed", str(self.seed), "--reason", self.reason]
        if not self.use_gpu:
            argv.append("--no-gpu")
        for flag, value in (("--airflow-dag-id", self.airflow_dag_id), ("--airflow-run-id", self.airflow_run_id)):
            if value:
                argv += [flag, value]
        return argv


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None  # an image without .git: the image tag is the version


def split_validation(train: "pd.DataFrame", validation_days: int) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """(fit rows, validation rows): the last `validation_days` dates of the window validate."""
    import pandas as pd

    dates = pd.to_datetime(train["flight_date"]).dt.date
    last = dates.max()
    cut = last - dt.timedelta(days=validation_days - 1)
    fit, valid = train[dates < cut], train[dates >= cut]
    if fit.empty or valid[LABEL].nunique() < 2:
        raise TrainingSetError(f"the training window is too short to hold out {validation_days} validation days "
                               f"(fit rows {len(fit)}, validation rows {len(valid)})")
    return fit, valid


def _tags(request: TrainRequest, training_set: TrainingSet, role: str) -> dict[str, str]:
    tags = {"role": role, "training_set": training_set.set_id, "reason": request.reason or "(none given)",
            "git_commit": git_commit() or "unknown", "family": request.family if role == "candidate" else "sklearn_hgb",
            **{f"window.{k}": v for k, v in request.windows.to_json().items()}}
    if request.airflow_dag_id:
        tags["airflow.dag_id"] = request.airflow_dag_id
    if request.airflow_run_id:
        tags["airflow.run_id"] = request.airflow_run_id
    return tags


def _log_lineage(lake: Lake, training_set: TrainingSet, train: "pd.DataFrame") -> None:
    import mlflow

    dataset = mlflow.data.from_pandas(train.head(1000), source=training_set.uris["train"],
                                      name=f"training_set_{training_set.set_id}", targets=LABEL)
    mlflow.log_input(dataset, context="training")
    for split in ("train", "holdout"):
        manifest = lake.read_manifest(training_set_key(training_set.set_id, split))
        mlflow.log_dict(manifest, f"lineage/{split}_manifest.json")
    mlflow.log_params({"rows_train": training_set.rows["train"], "rows_holdout": training_set.rows["holdout"],
                       "training_set_sha256": training_set.content_sha256["train"][:16]})


def _log_reference(train: "pd.DataFrame", trained: Any, settings: "Settings") -> None:
    """The model's drift reference (jobs/drift.py) in its run, where monitoring finds it."""
    import tempfile

    import mlflow

    from jobs.drift import REFERENCE_ARTIFACT, reference_sample

    reference, info = reference_sample(train, trained, settings.monitoring.reference_rows,
                                       settings.monitoring.sample_seed)
    folder, name = REFERENCE_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory(prefix="reference-") as staging:
        path = Path(staging) / name
        reference.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=folder)
    mlflow.log_params({"reference_rows": info["rows"], "reference_of_rows": info["of_rows"]})
    log.info("drift reference: %d of %d training rows (stratified by flight date) -> %s", info["rows"],
             info["of_rows"], REFERENCE_ARTIFACT)


def _curve_logger(prefix: str = ""):
    import mlflow

    def on_epoch(epoch: int, values: dict[str, float]) -> None:
        mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in values.items() if v is not None}, step=epoch)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in values.items() if v is not None))

    return on_epoch


def train_candidate(request: TrainRequest, *, settings: "Settings | None" = None,
                    lake: Lake | None = None) -> dict[str, Any]:
    """Steps 1-3 of the module docstring; returns the result line's payload."""
    import mlflow

    from jobs.model.baseline import HgbConfig, train_hgb
    from jobs.model.network import TorchConfig
    from jobs.model.preprocessing import FeatureSpec
    from jobs.model.pyfunc import log_model
    from jobs.model.training import train_torch
    from jobs.settings import get_settings

    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    mlflow_client = client(settings.mlflow.tracking_uri)  # fails first, naming the URI, if MLflow is down
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)

    training_set = build_training_set(lake, request.windows, settings=settings)
    train = read_training_set(lake, training_set.set_id, "train")
    fit, valid = split_validation(train, settings.training.validation_days)
    features = FeatureSpec.from_schema(exclude=settings.training.exclude_features)
    log.info("training set %s: %d fit rows, %d validation rows (%s..), %d features", training_set.set_id, len(fit),
             len(valid), valid["flight_date"].min(), len(features.columns))

    mlflow.set_experiment(settings.training.experiment)
    name = settings.mlflow.model_name
    threads = settings.training.cpu_threads
    torch_config = TorchConfig(epochs=request.epochs, batch_size=request.batch_size, lr=request.learning_rate,
                               seed=request.seed, use_gpu=request.use_gpu, num_threads=threads)
    hgb_config = HgbConfig(seed=request.seed, num_threads=threads)

    with mlflow.start_run(run_name=f"hgb-baseline-{training_set.set_id}",
                          tags=_tags(request, training_set, "baseline")) as baseline_run:
        _log_lineage(lake, training_set, train)
        mlflow.log_params({f"hgb.{k}": v for k, v in hgb_config.to_json().items()})
        baseline = train_hgb(fit, fit[LABEL], valid, valid[LABEL], features=features, config=hgb_config,
                             on_epoch=_curve_logger())
        mlflow.log_metrics({"valid_auc": baseline.valid_auc, "train_seconds": baseline.train_seconds,
                            "samples_per_s": baseline.samples_per_s})
        log_model(baseline, "model", fit.head(20))

    with mlflow.start_run(run_name=f"{request.family}-{training_set.set_id}",
                          tags={**_tags(request, training_set, "candidate"),
                                "baseline_run_id": baseline_run.info.run_id}) as run:
        _log_lineage(lake, training_set, train)
        mlflow.log_params({"family": request.family, "exclude_features": ",".join(settings.training.exclude_features),
                           "validation_days": settings.training.validation_days})
        if request.family == "torch_mlp":
            mlflow.log_params({f"torch.{k}": v for k, v in torch_config.to_json().items()})
            candidate = train_torch(fit, fit[LABEL], valid, valid[LABEL], features=features,
                                    config=torch_config, on_epoch=_curve_logger())
        else:
            mlflow.log_params({f"hgb.{k}": v for k, v in hgb_config.to_json().items()})
            candidate = baseline
        mlflow.log_metrics({"valid_auc": candidate.valid_auc, "train_seconds": candidate.train_seconds,
                            "samples_per_s": candidate.samples_per_s, "best_epoch": candidate.best_epoch})
        mlflow.set_tag("device", candidate.device)
        info = log_model(candidate, "model", fit.head(20))
        _log_reference(train, candidate, settings)
        version = mlflow.register_model(info.model_uri, name, tags={"run_id": run.info.run_id,
                                                                    "training_set": training_set.set_id,
                                                                    "reason": request.reason or "(none given)"})
        mlflow_client.set_registered_model_alias(name, CHALLENGER, version.version)
        mlflow.set_tag("model_version", version.version)
    log.info("registered %s version %s as %s (run %s, %s on %s, valid AUC %.4f)", name, version.version, CHALLENGER,
             run.info.run_id, request.family, candidate.device, candidate.valid_auc)
    return {"run_id": run.info.run_id, "baseline_run_id": baseline_run.info.run_id,
            "model_version": str(version.version), "model_uri": f"models:/{name}/{version.version}",
            "set_id": training_set.set_id, "device": candidate.device,
            "samples_per_s": round(candidate.samples_per_s, 1), "valid_auc": round(candidate.valid_auc, 6),
            "rows": {"fit": len(fit), "valid": len(valid), "holdout": training_set.rows["holdout"]}}


def build_parser(settings: "Settings") -> argparse.ArgumentParser:
    defaults = settings.training
    parser = step_parser("jobs.train", __doc__.split("\n\n")[0],
                         "--start 2013-01-01 --end 2013-02-21 --holdout-start 2013-02-22 --holdout-end 2013-02-28",
                         "--start 2013-01-01 --end 2013-02-21 --holdout-start 2013-02-22 --holdout-end 2013-02-28 "
                         "--family sklearn_hgb --reason 'a baseline'")
    parser.add_argument("--start", dest="train_start", required=True, type=dt.date.fromisoformat,
                        help="first flight date of the training window")
    parser.add_argument("--end", dest="train_end", required=True, type=dt.date.fromisoformat,
                        help="last flight date of the training window")
    for name in ("holdout-start", "holdout-end"):
        parser.add_argument(f"--{name}", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument("--family", choices=FAMILIES, default=defaults.family)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-gpu", dest="use_gpu", action="store_false", default=defaults.use_gpu,
                        help="train on CPU even when CUDA is available")
    parser.add_argument("--reason", default="", help="why this training runs (recorded on the runs and version)")
    parser.add_argument("--airflow-dag-id")
    parser.add_argument("--airflow-run-id")
    return parser


def main(argv: list[str] | None = None) -> int:
    from jobs.settings import get_settings

    settings = get_settings()
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        request = TrainRequest.from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        result = train_candidate(request, settings=settings)
    except TrainingSetError as exc:
        print(f"ERROR jobs.train rejected: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    except MlflowUnreachable as exc:
        print(f"ERROR jobs.train: {exc}", file=sys.stderr)
        return 1
    emit_result(result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
