"""The MLflow side of a model: logging a TrainedModel as a pyfunc (log_model) and loading it back (FlightDelayPyfunc).

The pyfunc (`FlightDelayPyfunc`, one class for both families) carries the preprocessor JSON,
a spec and the weights (a torch state dict, or the pickled HGB) as artifacts, and as its code
(`code_paths`) the modules it needs to load and predict, `SHIPPED_MODULES`, staged as
`jobs/model/<module>.py` with neither a `jobs/__init__.py` nor a `jobs/model/__init__.py`:
where the pipeline's own `jobs` package is importable it wins, so the copy never shadows it;
elsewhere the copy is found as namespace packages, without the trainers, the lake or Spark.
It loads on CUDA when present, else on CPU. Its signature declares categoricals as strings,
numerics as doubles and booleans as booleans; every feature is required (a missing column is
an error naming it, even one MLflow's signature calls optional).

Models logged while the model code was the single file `jobs/model.py` carry that file and
name the class `jobs.model.FlightDelayPyfunc`: elsewhere they load with their own copy; beside
the pipeline with this class (jobs/model/__init__.py re-exports it), which reads the same artifacts.

Needs MLflow, torch, numpy and pandas; it travels inside each logged model.
"""
from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from torch import nn

from jobs.model.network import TabularEnsemble, TabularNet, TorchConfig, pick_device
from jobs.model.preprocessing import Preprocessor, as_float, as_strings, require_columns
from jobs.model.trained import TrainedModel

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

PREDICTION_COLUMN = "probability"  # the pyfunc's output column: the probability of the label, jobs.feeds.LABEL
# The modules of jobs/model a logged model loads and predicts with: copied into its code. They import
# nothing else of the pipeline (the test loading a model without the pipeline checks it).
SHIPPED_MODULES = ("preprocessing", "network", "trained", "pyfunc")
_SPEC_FILE, _PREPROCESSOR_FILE = "spec.json", "preprocessor.json"
_WEIGHTS_FILE = {"torch": "state_dict.pt", "hgb": "hgb.joblib"}
_REQUIREMENTS = ("mlflow", "cloudpickle", "torch", "scikit-learn", "pandas", "numpy")


def pip_requirements() -> list[str]:
    """Pins of what loading and predicting need, read from the installed versions.

    A local version label is dropped (`2.13.0+cpu` -> `torch==2.13.0`): the serving image picks
    its CPU or CUDA build of the same release.
    """
    return [f"{name}=={importlib.metadata.version(name).split('+')[0]}" for name in _REQUIREMENTS]


def serving_frame(frame: pd.DataFrame, preprocessor: Preprocessor) -> pd.DataFrame:
    """The model's input columns with the dtypes its signature declares (strings, doubles, booleans)."""
    require_columns(frame, preprocessor.input_columns)
    out = {}
    for column in preprocessor.categorical:
        values, missing = as_strings(frame[column])
        out[column] = pd.Series(np.where(missing, None, values), dtype=object, index=frame.index)
    for column in preprocessor.numeric:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series.dtype) and not series.isna().any():
            out[column] = series.astype(bool)
        else:
            out[column] = pd.Series(as_float(series), index=frame.index)
    return pd.DataFrame(out, index=frame.index)


def load_trained(spec: Mapping[str, Any], preprocessor: Preprocessor, weights_path: str | Path,
                 device: str | None = None) -> TrainedModel:
    """Rebuild a TrainedModel from the logged artifacts (on CUDA when present unless `device` says otherwise)."""
    family = spec["family"]
    if family == "hgb":
        import joblib

        return TrainedModel("hgb", preprocessor, joblib.load(weights_path), dict(spec["config"]))
    target = torch.device(device) if device else pick_device(True)
    config = TorchConfig.from_json(spec["config"])
    members = [TabularNet(preprocessor.cardinalities, len(preprocessor.numeric_output_names), config)
               for _ in range(config.ensemble_size)]
    net: nn.Module = members[0] if len(members) == 1 else TabularEnsemble(members)
    net.load_state_dict(torch.load(weights_path, map_location=target, weights_only=True))
    net.to(target).eval()
    return TrainedModel("torch", preprocessor, net, dict(spec["config"]), device=str(target))


class FlightDelayPyfunc(mlflow.pyfunc.PythonModel):
    """The logged model: raw feature rows in, `probability` (of the label, jobs.feeds.LABEL) out, one per row.

    Carries its preprocessing; columns beyond the features are ignored, a missing feature
    column is a MissingFeaturesError naming it.
    """

    def load_context(self, context: Any) -> None:
        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        preprocessor = Preprocessor.from_json(Path(context.artifacts["preprocessor"]).read_text())
        self.model = load_trained(spec, preprocessor, context.artifacts["weights"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.Series:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        require_columns(frame, self.model.preprocessor.input_columns)
        return pd.Series(self.model.predict_proba(frame), index=frame.index, name=PREDICTION_COLUMN)


def _save_weights(trained: TrainedModel, path: Path) -> None:
    if trained.family == "hgb":
        import joblib

        joblib.dump(trained.estimator, path)
    else:
        torch.save({k: v.detach().cpu() for k, v in trained.estimator.state_dict().items()}, path)


def _stage_code(root: Path) -> Path:
    """`root/code/jobs` holding `model/<module>.py` for each of SHIPPED_MODULES, no `__init__.py` (see above)."""
    code = root / "code" / "jobs"
    package = code / "model"
    package.mkdir(parents=True)
    here = Path(__file__).resolve().parent
    for module in SHIPPED_MODULES:
        shutil.copy2(here / f"{module}.py", package / f"{module}.py")
    return code


def log_model(trained: TrainedModel, name: str, input_example: pd.DataFrame, *,
              registered_model_name: str | None = None, metadata: Mapping[str, Any] | None = None) -> "ModelInfo":
    """Log `trained` as an MLflow pyfunc (`FlightDelayPyfunc`) and return its ModelInfo.

    `input_example`: a few raw feature rows (extra columns are dropped). The signature is
    inferred from them and the model's output on them; requirements are the explicit pins of
    `pip_requirements()`; the modules of SHIPPED_MODULES travel as `code/jobs/model/<module>.py`.
    """
    from mlflow.models import infer_signature

    example = serving_frame(input_example, trained.preprocessor)
    output = pd.Series(trained.predict_proba(example), index=example.index, name=PREDICTION_COLUMN)
    signature = infer_signature(example, output)
    spec = {"family": trained.family, "config": trained.config, "format": 1,
            "input_columns": trained.preprocessor.input_columns}
    with tempfile.TemporaryDirectory(prefix="flight-delay-model-") as staging:
        root = Path(staging)
        (root / _SPEC_FILE).write_text(json.dumps(spec, sort_keys=True))
        (root / _PREPROCESSOR_FILE).write_text(trained.preprocessor.to_json())
        weights = root / _WEIGHTS_FILE[trained.family]
        _save_weights(trained, weights)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=FlightDelayPyfunc(),
            artifacts={"spec": str(root / _SPEC_FILE), "preprocessor": str(root / _PREPROCESSOR_FILE),
                       "weights": str(weights)},
            code_paths=[str(_stage_code(root))],
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
            metadata={"family": trained.family, "device_trained_on": trained.device, **(metadata or {})},
        )
