"""The flight-delay models: this package's public names, one module per job.

    features = FeatureSpec.from_schema(exclude=("month",))
    trained = train_torch(train, y_train, valid, y_valid, features=features, on_epoch=log_curve)
    baseline = train_hgb(train, y_train, valid, y_valid, features=features)
    trained.predict_proba(holdout)                     # P(label) per row, jobs.feeds.LABEL
    info = log_model(trained, "model", input_example=train.head(20))   # inside an MLflow run

Inputs are pandas frames of feature rows (the columns of features/flights/date={ds},
config/features.yaml; extra columns are ignored) and a 0/1 label array. Assembling the
training set (join with the labels, dropping cancelled flights, the time split) is the
caller's job; so is logging metrics (`on_epoch`) and registering.

- preprocessing: which columns (FeatureSpec) and the fitted Preprocessor, for both families;
- network: the torch network (TorchConfig, TabularNet, TabularEnsemble) and batched prediction;
- trained: TrainedModel, a fitted model of either family with its preprocessing;
- training: train_torch, the torch training loop;
- baseline: train_hgb, the HistGradientBoosting baseline;
- labels: the label check and ROC AUC the trainers share;
- leakage: single_feature_aucs, the gate's leakage guard;
- pyfunc: log_model and FlightDelayPyfunc, the MLflow pyfunc that carries preprocessing,
  network and trained as its code.

`jobs.model.FlightDelayPyfunc` stays importable here: models logged before this was a package
name the class by that path. Importing the package imports torch and MLflow (scikit-learn where
used): DAG files must not import it.
"""
from jobs.model.baseline import HgbConfig, train_hgb
from jobs.model.leakage import single_feature_aucs
from jobs.model.network import TabularEnsemble, TabularNet, TorchConfig
from jobs.model.preprocessing import DEFAULT_EXCLUDED_FEATURES, FeatureSpec, MissingFeaturesError, Preprocessor
from jobs.model.pyfunc import (
    PREDICTION_COLUMN, FlightDelayPyfunc, load_trained, log_model, pip_requirements, serving_frame,
)
from jobs.model.trained import TrainedModel
from jobs.model.training import train_torch

__all__ = [
    "DEFAULT_EXCLUDED_FEATURES", "FeatureSpec", "FlightDelayPyfunc", "HgbConfig", "MissingFeaturesError",
    "PREDICTION_COLUMN", "Preprocessor", "TabularEnsemble", "TabularNet", "TorchConfig", "TrainedModel", "load_trained",
    "log_model", "pip_requirements", "serving_frame", "single_feature_aucs", "train_hgb", "train_torch",
]
