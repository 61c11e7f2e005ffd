"""jobs/model/ on small synthetic frames: preprocessing, determinism, learning, the MLflow pyfunc round trip.

Synthetic rows with a planted signal (carrier, hour, a boolean flag; temp is noise), a few
thousand rows and 2-3 epochs of a small network: seconds, not minutes. The pyfunc is logged
to a real MLflow store (SQLite + local artifacts) under tmp_path and loaded back in a subprocess that runs
elsewhere, with no repository on its path: the model must carry its own code.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from jobs.model.baseline import HgbConfig, train_hgb
from jobs.model.leakage import single_feature_aucs
from jobs.model.network import TorchConfig
from jobs.model.preprocessing import FeatureSpec, MissingFeaturesError, Preprocessor
from jobs.model.pyfunc import PREDICTION_COLUMN, SHIPPED_MODULES, FlightDelayPyfunc, log_model, pip_requirements
from jobs.model.training import train_torch

REPO_ROOT = Path(__file__).resolve().parents[2]
FEATURES = FeatureSpec(categorical=("carrier", "origin"), numeric=("hour", "temp", "flag"))
SMALL = TorchConfig(epochs=3, patience=3, batch_size=128, lr=5e-3, hidden=(32, 16), numeric_bins=8, numeric_dim=4,
                    max_embedding_dim=4, ema_decay=0.9, ensemble_size=2, use_gpu=False, num_threads=1, seed=7)
QUICK_HGB = HgbConfig(max_iter=60, learning_rate=0.1, min_samples_leaf=20, n_iter_no_change=10, seed=7)


def synthetic(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature rows whose delay odds depend on carrier, hour and flag; `tailnum` is an info column."""
    rng = np.random.default_rng(seed)
    carrier = rng.choice(list("ABCDEFG") + ["RARE"], rows, p=[0.2, 0.2, 0.15, 0.15, 0.1, 0.1, 0.095, 0.005])
    hour = rng.integers(5, 23, rows).astype("float64")
    flag = rng.random(rows) < 0.3
    logit = -1.0 + 1.6 * np.isin(carrier, ["A", "B"]) + 0.2 * (hour - 14) + 1.0 * flag
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    hour[rng.random(rows) < 0.1] = np.nan  # missing after the label is drawn
    frame = pd.DataFrame({
        "carrier": pd.array(carrier, dtype="string"),
        "origin": pd.array(rng.choice(["EWR", "JFK", "LGA"], rows), dtype="string"),
        "hour": pd.array([None if np.isnan(h) else int(h) for h in hour], dtype="Int32"),  # as the lake reads it
        "temp": rng.normal(50.0, 15.0, rows),
        "flag": pd.array(flag, dtype="boolean"),
        "tailnum": pd.array([f"N{i}" for i in range(rows)], dtype="string"),
    })
    return frame, labels


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    return {"train": synthetic(3000, 1), "valid": synthetic(800, 2), "test": synthetic(1500, 3)}


@pytest.fixture(scope="module")
def torch_model(data):
    (train, y_train), (valid, y_valid) = data["train"], data["valid"]
    return train_torch(train, y_train, valid, y_valid, features=FEATURES, config=SMALL)


@pytest.fixture(scope="module")
def hgb_model(data):
    (train, y_train), (valid, y_valid) = data["train"], data["valid"]
    return train_hgb(train, y_train, valid, y_valid, features=FEATURES, config=QUICK_HGB)


# Preprocessing -----------------------------------------------------------------------------
def test_unknown_rare_and_missing_categories_get_code_zero(data):
    train, _ = data["train"]
    pre = Preprocessor.fit(train, FEATURES, min_category_count=20)
    assert "RARE" not in pre.vocabularies["carrier"]  # 0.5% of 3000 rows < 20
    assert pre.vocabularies["carrier"][:2] == ["A", "B"] or set(pre.vocabularies["carrier"][:2]) == {"A", "B"}
    rows = pd.DataFrame({"carrier": pd.array(["A", "ZZ", None, "RARE"], dtype="string"),
                         "origin": ["JFK", "JFK", "JFK", "JFK"], "hour": [10, 10, 10, 10],
                         "temp": [50.0] * 4, "flag": [True] * 4})
    codes, _ = pre.transform(rows)
    assert codes[0, 0] == pre.vocabularies["carrier"].index("A") + 1
    assert list(codes[1:, 0]) == [0, 0, 0]
    assert pre.cardinalities == [len(pre.vocabularies["carrier"]) + 1, 4]


def test_missing_numerics_get_the_training_median_and_an_indicator(data):
    train, _ = data["train"]
    pre = Preprocessor.fit(train, FEATURES)
    hours = train["hour"].astype("float64")
    assert pre.medians["hour"] == pytest.approx(float(np.nanmedian(hours)))
    assert pre.missing_indicators == ["hour"]  # temp and flag have no nulls in training
    assert pre.numeric_output_names == ["hour", "temp", "flag", "hour_missing"]
    rows = pd.DataFrame({"carrier": ["A", "A"], "origin": ["JFK", "JFK"],
                         "hour": pd.array([None, int(pre.medians["hour"])], dtype="Int32"),
                         "temp": [np.nan, 50.0], "flag": pd.array([None, False], dtype="boolean")})
    _, numeric = pre.transform(rows)
    assert numeric[0, 0] == pytest.approx(numeric[1, 0])  # missing hour = the median hour
    assert list(numeric[:, 3]) == [1.0, 0.0]
    temp_at_median = (pre.medians["temp"] - pre.means["temp"]) / pre.stds["temp"]
    assert numeric[0, 1] == pytest.approx(temp_at_median, rel=1e-5)  # no indicator column, still imputed
    assert np.isfinite(numeric).all()
    # Booleans are 0/1 before standardising: a True row sits above a False row.
    flags = pre.transform(rows.assign(flag=[True, False]))[1][:, 2]
    assert flags[0] > flags[1]


def test_standardisation_uses_training_rows_only(data, torch_model, hgb_model):
    (train, _), (valid, _) = data["train"], data["valid"]
    pre = Preprocessor.fit(train, FEATURES)
    _, numeric = pre.transform(train)
    assert numeric[:, :3].mean(axis=0) == pytest.approx([0, 0, 0], abs=1e-4)
    assert numeric[:, :3].std(axis=0) == pytest.approx([1, 1, 1], abs=1e-3)
    shifted = Preprocessor.fit(pd.concat([train, valid.assign(temp=valid["temp"] + 100)]), FEATURES)
    assert shifted.means["temp"] != pytest.approx(pre.means["temp"])
    # Both trainers fit their preprocessing on the training rows, never on the validation rows.
    assert torch_model.preprocessor.to_json() == Preprocessor.fit(
        train, FEATURES, min_category_count=SMALL.min_category_count, max_categories=SMALL.max_categories).to_json()
    assert hgb_model.preprocessor.to_json() == Preprocessor.fit(
        train, FEATURES, min_category_count=QUICK_HGB.min_category_count,
        max_categories=QUICK_HGB.max_categories).to_json()


def test_preprocessor_json_round_trip(data):
    train, _ = data["train"]
    pre = Preprocessor.fit(train, FEATURES)
    again = Preprocessor.from_json(json.loads(json.dumps(pre.to_json())))
    for got, want in zip(again.transform(train), pre.transform(train)):
        np.testing.assert_array_equal(got, want)


def test_feature_spec_from_the_declared_schema():
    spec = FeatureSpec.from_schema(exclude=("month",))
    assert "month" not in spec.columns and "carrier" in spec.categorical
    assert {"year", "day", "flight", "flight_date", "tailnum", "sched_dep_time"}.isdisjoint(spec.columns)
    assert {"plane_known", "weather_available", "history_days_available"} <= set(spec.numeric)
    assert "month" in FeatureSpec.from_schema(exclude=()).numeric
    with pytest.raises(ValueError, match="dep_delay"):
        FeatureSpec.from_schema(exclude=("dep_delay",))


# Training --------------------------------------------------------------------------------
def test_torch_learns_the_planted_signal(data, torch_model):
    test, y_test = data["test"]
    p = torch_model.predict_proba(test)
    assert p.shape == (len(test),) and np.all((p > 0) & (p < 1))
    assert roc_auc_score(y_test, p) > 0.75
    assert torch_model.device == "cpu" and torch_model.samples_per_s > 0
    assert [(h["member"], h["epoch"], h["step"]) for h in torch_model.history] == [
        (1, 1, 1), (1, 2, 2), (1, 3, 3), (2, 1, 4), (2, 2, 5), (2, 3, 6)]
    assert set(torch_model.history[0]) == {"step", "member", "epoch", "train_loss", "valid_loss", "valid_auc",
                                           "samples_per_s", "lr"}


def test_same_seed_same_predictions(data, torch_model):
    (train, y_train), (valid, y_valid), (test, _) = data["train"], data["valid"], data["test"]
    calls = []
    again = train_torch(train, y_train, valid, y_valid, features=FEATURES, config=SMALL,
                        on_epoch=lambda epoch, metrics: calls.append((epoch, sorted(metrics))))
    np.testing.assert_array_equal(again.predict_proba(test), torch_model.predict_proba(test))
    assert calls == [(step, ["lr", "samples_per_s", "train_loss", "valid_auc", "valid_loss"]) for step in range(1, 7)]
    other = train_torch(train, y_train, valid, y_valid, features=FEATURES,
                        config=TorchConfig(**{**SMALL.__dict__, "seed": 8, "epochs": 1}))
    assert not np.array_equal(other.predict_proba(test), torch_model.predict_proba(test))


def test_mixed_precision_path_runs(data):
    """The autocast + GradScaler code path (bf16 on CPU here; fp16 on CUDA) trains and predicts."""
    (train, y_train), (valid, y_valid) = data["train"], data["valid"]
    config = TorchConfig(**{**SMALL.__dict__, "epochs": 1, "mixed_precision": True, "numeric_embedding": "periodic"})
    model = train_torch(train, y_train, valid, y_valid, features=FEATURES, config=config)
    assert np.isfinite(model.predict_proba(valid)).all()


def test_hgb_baseline_learns_and_is_deterministic(data, hgb_model):
    (train, y_train), (valid, y_valid), (test, y_test) = data["train"], data["valid"], data["test"]
    p = hgb_model.predict_proba(test)
    assert roc_auc_score(y_test, p) > 0.75
    assert hgb_model.family == "hgb" and hgb_model.samples_per_s > 0 and hgb_model.history
    again = train_hgb(train, y_train, valid, y_valid, features=FEATURES, config=QUICK_HGB)
    np.testing.assert_array_equal(again.predict_proba(test), p)


def test_labels_are_checked(data):
    (train, y_train), (valid, y_valid) = data["train"], data["valid"]
    with pytest.raises(ValueError, match="labels"):
        train_hgb(train, y_train[:-1], valid, y_valid, features=FEATURES, config=QUICK_HGB)
    with pytest.raises(ValueError, match="one class"):
        train_torch(train, np.zeros(len(train)), valid, y_valid, features=FEATURES, config=SMALL)


def test_single_feature_aucs_rank_the_planted_features(data):
    (train, y_train), (test, y_test) = data["train"], data["test"]
    aucs = single_feature_aucs(train, y_train, test, y_test, FEATURES)
    assert set(aucs) == set(FEATURES.columns)
    assert all(0.5 <= v <= 1 for v in aucs.values())
    assert aucs["carrier"] > 0.6 and aucs["temp"] < 0.56


# MLflow pyfunc -------------------------------------------------------------------------------
LOAD_ELSEWHERE = textwrap.dedent("""
    import importlib.util, json, sys
    if sys.argv[3] != "with-repo":  # a serving image without the pipeline package: no editable install either
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
    import numpy as np, pandas as pd
    repo_importable = importlib.util.find_spec("jobs") is not None
    assert repo_importable == (sys.argv[3] == "with-repo"), repo_importable
    import mlflow.pyfunc
    rows = pd.read_pickle(sys.argv[1])
    out = {}
    for family, uri in json.loads(sys.argv[2]).items():
        model = mlflow.pyfunc.load_model(uri)
        prediction = model.predict(rows)
        out[family] = {"probability": [float(v) for v in prediction], "name": prediction.name}
    out["module"] = sys.modules["jobs.model.pyfunc"].__file__
    out["jobs_modules"] = sorted(name for name in sys.modules if name.startswith("jobs."))
    if repo_importable:  # the model's copy of jobs/model/ must not shadow the pipeline's package
        import jobs.lake
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def logged(tmp_path_factory, data, torch_model, hgb_model):
    import mlflow

    store = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{store / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        experiment = mlflow.create_experiment("test-model", artifact_location=(store / "artifacts").as_uri())
        mlflow.set_experiment(experiment_id=experiment)
        example = data["train"][0].head(20)
        with mlflow.start_run():
            infos = {"torch": log_model(torch_model, "torch", example), "hgb": log_model(hgb_model, "hgb", example)}
        yield tracking_uri, infos
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.mark.parametrize("where", ["without-repo", "with-repo"])
def test_pyfunc_round_trip_in_another_process(where, tmp_path, data, torch_model, hgb_model, logged):
    """Elsewhere the model's own copy of jobs/model/ is used (its shipped modules only); beside the pipeline, the
    pipeline's package."""
    store, infos = logged
    test, _ = data["test"]
    rows = test.assign(unused_column="ignored")  # extra columns are fine
    rows_path = tmp_path / "rows.pkl"
    rows.to_pickle(rows_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if where == "with-repo":
        env["PYTHONPATH"] = str(REPO_ROOT)
    env["MLFLOW_TRACKING_URI"] = store
    done = subprocess.run(
        [sys.executable, "-c", LOAD_ELSEWHERE, str(rows_path), json.dumps({f: i.model_uri for f, i in infos.items()}),
         where],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["module"].startswith(str(REPO_ROOT)) == (where == "with-repo")
    if where == "without-repo":  # no trainers, no lake, no Spark: the shipped modules are enough
        assert out["jobs_modules"] == sorted(["jobs.model", *(f"jobs.model.{m}" for m in SHIPPED_MODULES)])
    for family, trained in (("torch", torch_model), ("hgb", hgb_model)):
        assert out[family]["name"] == PREDICTION_COLUMN
        np.testing.assert_allclose(out[family]["probability"], trained.predict_proba(test), rtol=1e-6, atol=1e-7)


def test_logged_model_declares_its_inputs_and_pins(logged):
    import mlflow

    _, infos = logged
    info = infos["torch"]
    assert info.signature.inputs.input_names() == list(FEATURES.columns)
    types = {spec.name: spec.type.name for spec in info.signature.inputs.inputs}
    assert types == {"carrier": "string", "origin": "string", "hour": "double", "temp": "double", "flag": "boolean"}
    model_dir = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    requirements = (model_dir / "requirements.txt").read_text()
    shipped = sorted(path.name for path in (model_dir / "code" / "jobs" / "model").iterdir())
    assert shipped == sorted(f"{module}.py" for module in SHIPPED_MODULES)
    assert [path.name for path in (model_dir / "code" / "jobs").iterdir()] == ["model"]  # no __init__.py
    assert sorted(requirements.split()) == sorted(pip_requirements())
    assert any(r.startswith("torch==") and "+" not in r for r in pip_requirements())
    assert not any(r.startswith("pytest") for r in requirements.split())


def test_models_logged_before_the_package_find_their_class():
    """A model logged when the code was the single file jobs/model.py pickles its class as jobs.model.FlightDelayPyfunc;
    beside the pipeline that name must still resolve (to the class that reads the same artifacts)."""
    assert pickle.loads(b"cjobs.model\nFlightDelayPyfunc\n.") is FlightDelayPyfunc


def test_pyfunc_names_missing_columns(data, logged):
    import mlflow

    _, infos = logged
    model = mlflow.pyfunc.load_model(infos["hgb"].model_uri)
    test, _ = data["test"]
    # hour is optional in the signature (it has nulls), carrier is required: either way the error names them.
    for dropped in (["hour"], ["carrier", "hour"]):
        with pytest.raises(Exception, match="hour") as caught:
            model.predict(test.drop(columns=dropped))
        if dropped == ["hour"]:
            assert isinstance(caught.value, MissingFeaturesError)
    # Serving dtypes: what Spark hands over (plain numpy ints/floats/bools, object strings) scores the same.
    plain = test.assign(carrier=test["carrier"].astype(object), origin=test["origin"].astype(object),
                        hour=test["hour"].astype("float64"), flag=test["flag"].astype(bool))
    np.testing.assert_allclose(model.predict(plain).to_numpy(), model.predict(test).to_numpy())
