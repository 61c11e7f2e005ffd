"""jobs/drift.py: real Evidently on constructed frames, with and without drift, and the bounded sampler."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jobs.drift import data_drift, prediction_drift, stratified_sample

NUMERICAL, CATEGORICAL = ["temp", "dewp", "distance"], ["origin", "carrier"]


def frame(rows: int, seed: int, temp_shift: float = 0.0, dewp_shift: float = 0.0, jfk_share: float = 1 / 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    other = (1 - jfk_share) / 2
    return pd.DataFrame({
        "temp": rng.normal(40 + temp_shift, 10, rows),
        "dewp": rng.normal(30 + dewp_shift, 10, rows),
        "distance": rng.gamma(2.0, 500.0, rows),
        "origin": rng.choice(["EWR", "JFK", "LGA"], rows, p=[other, jfk_share, other]),
        "carrier": rng.choice(["UA", "B6", "EV", "DL"], rows),
    })


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(5000, seed=1)


def test_same_distribution_does_not_drift(reference):
    result = data_drift(reference, frame(2000, seed=2), NUMERICAL, CATEGORICAL, drift_share=0.3)
    assert result.summary["dataset_drift"] is False
    assert result.summary["drifted_columns"] == []
    assert set(result.summary["columns"]) == {*NUMERICAL, *CATEGORICAL}
    # Over 1000 reference rows Evidently compares distances, not p-values.
    assert result.summary["columns"]["temp"]["method"] == "Wasserstein distance (normed)"
    assert result.summary["columns"]["origin"]["method"] == "Jensen-Shannon distance"


def test_a_july_like_shift_drifts_the_weather_columns_first(reference):
    result = data_drift(reference, frame(2000, seed=3, temp_shift=35, dewp_shift=30), NUMERICAL, CATEGORICAL,
                        drift_share=0.3)
    summary = result.summary
    assert summary["dataset_drift"] is True
    assert summary["drifted_columns"][:2] == ["temp", "dewp"] or summary["drifted_columns"][:2] == ["dewp", "temp"]
    assert summary["drift_share"] == pytest.approx(2 / 5)
    assert "distance" not in summary["drifted_columns"]
    # The HTML report renders.
    assert "<html" in result.snapshot.get_html_str(as_iframe=False).lower()


def test_drift_share_policy_decides_the_dataset_verdict(reference):
    current = frame(2000, seed=3, temp_shift=35)
    assert data_drift(reference, current, NUMERICAL, CATEGORICAL, drift_share=0.2).summary["dataset_drift"] is True
    assert data_drift(reference, current, NUMERICAL, CATEGORICAL, drift_share=0.5).summary["dataset_drift"] is False


def test_a_categorical_shift_is_seen(reference):
    result = data_drift(reference, frame(2000, seed=4, jfk_share=0.9), NUMERICAL, CATEGORICAL, drift_share=0.3)
    assert "origin" in result.summary["drifted_columns"]


def test_an_empty_column_is_reported_not_fatal(reference):
    current = frame(500, seed=5)
    current["dewp"] = np.nan
    summary = data_drift(reference, current, NUMERICAL, CATEGORICAL, drift_share=0.3).summary
    assert summary["empty_columns"] == ["dewp"]
    assert "dewp" not in summary["columns"]


def test_missing_reference_column_is_named(reference):
    with pytest.raises(ValueError, match=r"lacks the reference's columns \['dewp'\]"):
        data_drift(reference, frame(100, seed=6).drop(columns="dewp"), NUMERICAL, CATEGORICAL, drift_share=0.3)


def test_prediction_drift(reference):
    rng = np.random.default_rng(7)
    same = prediction_drift(pd.Series(rng.beta(2, 8, 5000)), pd.Series(rng.beta(2, 8, 900)))
    moved = prediction_drift(pd.Series(rng.beta(2, 8, 5000)), pd.Series(rng.beta(5, 5, 900)))
    assert same.summary["drifted"] is False and moved.summary["drifted"] is True
    assert moved.summary["current_mean"] > moved.summary["reference_mean"]


def test_sample_is_bounded_and_stratified():
    big = frame(100_000, seed=8, jfk_share=0.5)
    sample, info = stratified_sample(big, 5000, "origin", seed=13)
    assert info == {"rows": 5000, "of_rows": 100_000, "stratified_by": "origin", "sampled": True}
    assert len(sample) == 5000
    shares = sample["origin"].value_counts(normalize=True)
    expected = big["origin"].value_counts(normalize=True)
    assert (shares - expected).abs().max() < 0.001, "proportional allocation keeps each stratum's share"
    again, _ = stratified_sample(big, 5000, "origin", seed=13)
    pd.testing.assert_frame_equal(sample, again)  # seeded


def test_small_frames_are_not_sampled_and_rare_strata_survive():
    small = frame(300, seed=9)
    same, info = stratified_sample(small, 1000, "origin", seed=1)
    assert same is small and info["sampled"] is False
    skewed = pd.concat([frame(9990, seed=10).assign(origin="EWR"), frame(10, seed=11).assign(origin="JFK")])
    sample, _ = stratified_sample(skewed, 100, "origin", seed=1)
    assert len(sample) == 100 and (sample["origin"] == "JFK").sum() >= 1


def test_thresholds_from_the_policy_decide_what_counts(reference):
    """A shift of half a standard deviation drifts at Evidently's 0.1 but not at the policy's 1.0."""
    current = frame(2000, seed=12, temp_shift=5)
    assert "temp" in data_drift(reference, current, NUMERICAL, CATEGORICAL, 0.3).summary["drifted_columns"]
    strict = data_drift(reference, current, NUMERICAL, CATEGORICAL, 0.3, numerical_threshold=1.0).summary
    assert strict["drifted_columns"] == [] and strict["columns"]["temp"]["threshold"] == 1.0
    assert 0.3 < strict["columns"]["temp"]["score"] < 1.0
