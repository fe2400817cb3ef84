"""Drift: PSI against hand-computed values, a bounded window, and GET /drift."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from modelyard_serving.drift import DriftTracker, FeatureReference, ProfileError, parse_profile, psi
from modelyard_serving.model_store import ModelStore

from .conftest import IRIS_ROW, Registry, serve

# One feature with cuts 1 and 2: bins are x <= 1, 1 < x <= 2, x > 2, expected 25/50/25 %.
REF = FeatureReference("x", (1.0, 2.0), (0.25, 0.5, 0.25))


def column(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64).reshape(-1, 1)


def test_psi_matches_a_hand_computed_value() -> None:
    tracker = DriftTracker([REF], capacity=100)
    # 1 value in bin 0, 3 in bin 1 (1.0 < x <= 2.0, so 2.0 itself is bin 1), 4 in bin 2.
    tracker.observe(column(0.5, 1.5, 1.5, 2.0, 2.5, 2.5, 2.5, 2.5))
    # actual = 1/8, 3/8, 4/8 against 1/4, 1/2, 1/4:
    #   (0.125-0.25)ln(0.5) + (0.375-0.5)ln(0.75) + (0.5-0.25)ln(2) = 0.2958905...
    expected = -0.125 * math.log(0.5) - 0.125 * math.log(0.75) + 0.25 * math.log(2)
    assert expected == pytest.approx(0.2958905, abs=1e-7)
    snap = tracker.snapshot()
    assert snap.features["x"] == pytest.approx(expected, rel=1e-12)
    assert snap.score == pytest.approx(expected, rel=1e-12)


def test_empty_bins_are_smoothed_with_epsilon() -> None:
    tracker = DriftTracker([REF], capacity=10)
    tracker.observe(column(5.0, 6.0))  # everything in the last bin
    # Bins 0 and 1 are empty: their 0 becomes 1e-4 instead of making ln(0) infinite.
    eps = 1e-4
    expected = (eps - 0.25) * math.log(eps / 0.25) + (eps - 0.5) * math.log(eps / 0.5) + 0.75 * math.log(1 / 0.25)
    assert tracker.snapshot().features["x"] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(7.2527, abs=1e-4)


def test_identical_distribution_scores_zero_and_score_is_the_mean() -> None:
    other = FeatureReference("y", (0.0,), (0.5, 0.5))
    tracker = DriftTracker([REF, other], capacity=8)
    tracker.observe(np.array([[0.5, -1], [1.5, -1], [1.5, -1], [2.5, -1]], dtype=np.float64))
    snap = tracker.snapshot()
    assert snap.features["x"] == pytest.approx(0.0, abs=1e-12)
    y = psi(np.array([1.0, 0.0]), np.array([0.5, 0.5]))
    assert snap.features["y"] == pytest.approx(float(y))
    assert snap.score == pytest.approx(float(y) / 2)


def test_window_is_bounded_and_keeps_only_the_latest_rows() -> None:
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 3, size=(97, 1))
    capacity = 10
    tracker = DriftTracker([REF], capacity=capacity)
    ring_bytes = len(tracker._ring) * tracker._ring.itemsize
    # Mixed single rows and batches, some larger than the window itself.
    for start, stop in [(0, 1), (1, 4), (4, 5), (5, 30), (30, 31), (31, 38), (38, 97)]:
        tracker.observe(data[start:stop])
        assert tracker.window_size == min(stop, capacity)
        fresh = DriftTracker([REF], capacity=capacity)
        for row in data[max(0, stop - capacity) : stop]:
            fresh.observe(row.reshape(1, 1))
        assert tracker.snapshot() == fresh.snapshot()
    assert len(tracker._ring) * tracker._ring.itemsize == ring_bytes == capacity * 4


def test_single_rows_and_batches_bin_identically_including_nan() -> None:
    rows = np.array([[0.5], [1.0], [1.0000001], [2.0], [7.0], [np.nan], [-1e300]], dtype=np.float64)
    one_by_one = DriftTracker([REF], capacity=50)
    for row in rows:
        one_by_one.observe(row.reshape(1, 1))
    batched = DriftTracker([REF], capacity=50)
    batched.observe(rows)
    assert one_by_one._counts == batched._counts == [3, 2, 2]  # NaN sorts last, like searchsorted


def test_bins_follow_numpy_searchsorted_left() -> None:
    cuts = (4.8, 5.0, 5.3, 5.6)
    tracker = DriftTracker([FeatureReference("f", cuts, (0.2,) * 5)], capacity=100)
    values = np.array([4.0, 4.8, 4.9, 5.0, 5.3, 5.31, 5.6, 9.0])
    tracker.observe(values.reshape(-1, 1))
    expected = np.bincount(np.searchsorted(cuts, values, side="left"), minlength=5).tolist()
    assert tracker._counts == expected


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"version": 2, "features": []}, "version 1"),
        ({"version": 1, "features": []}, "no features"),
        ({"version": 1, "features": [{"name": "x", "cuts": [2, 1], "expected": [0.3, 0.3, 0.4]}]}, "increasing"),
        ({"version": 1, "features": [{"name": "x", "cuts": [1], "expected": [1.0]}]}, r"len\(cuts\)\+1"),
        ({"version": 1, "features": [{"name": "x", "cuts": [1], "expected": [0.9, 0.9]}]}, "summing to 1"),
        ({"version": 1, "features": [{"name": "z", "cuts": [1], "expected": [0.5, 0.5]}]}, "lacks model features"),
    ],
)
def test_bad_profiles_are_rejected(profile: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profile(profile, ["x"])


def test_profile_features_are_reordered_to_the_model_input_order() -> None:
    raw = (
        '{"version": 1, "features": [{"name": "b", "cuts": [0], "expected": [0.5, 0.5]},'
        ' {"name": "a", "cuts": [1, 2], "expected": [0.2, 0.3, 0.5]}]}'
    )
    assert [f.name for f in parse_profile(raw, ["a", "b"])] == ["a", "b"]


def _send(client: TestClient, rows: list[list[float]]) -> None:
    for row in rows[:60]:  # single-row requests, like live traffic
        assert client.post("/predict", json={"instances": [row]}).status_code == 200
    assert client.post("/predict", json={"instances": rows[60:]}).status_code == 200


def test_in_distribution_traffic_scores_low_and_shifted_traffic_high(
    iris_store: ModelStore, registry: Registry
) -> None:
    rows = registry.iris_data.sample(frac=1.0, random_state=3).to_numpy().tolist()
    with serve(iris_store) as client:
        _send(client, rows)
        calm = client.get("/drift").json()
    with serve(iris_store) as client:
        _send(client, [[x * 3 for x in row] for row in rows])
        shifted = client.get("/drift").json()
    assert calm["available"] and calm["windowSize"] == 150 and calm["referenceVersion"] == "1"
    assert calm["score"] < 0.05
    assert shifted["score"] > 2.0
    assert all(v > 1.0 for v in shifted["features"].values())


def test_drift_report_shape(iris_client: TestClient) -> None:
    iris_client.post("/predict", json={"instances": [IRIS_ROW]})
    report = iris_client.get("/drift").json()
    assert set(report) == {"available", "referenceVersion", "windowSize", "windowCapacity", "score", "features"}
    assert report["windowSize"] == 1 and report["windowCapacity"] == 10_000


def test_empty_window_reports_zero(iris_client: TestClient) -> None:
    report = iris_client.get("/drift").json()
    assert report["windowSize"] == 0 and report["score"] == 0.0


def test_window_size_is_configurable(iris_store: ModelStore) -> None:
    with serve(iris_store, drift_window=5) as client:
        client.post("/predict", json={"instances": [IRIS_ROW] * 12})
        report = client.get("/drift").json()
    assert report["windowSize"] == 5 and report["windowCapacity"] == 5


def test_model_without_profile_reports_unavailable_not_an_error(registry: Registry) -> None:
    store = ModelStore(registry.iris_no_profile)
    store.load()
    with serve(store) as client:
        assert client.post("/predict", json={"instances": [IRIS_ROW]}).status_code == 200
        response = client.get("/drift")
    assert response.status_code == 200
    assert response.json()["available"] is False
    assert "modelyard_profile" in response.json()["reason"]


def test_drift_can_be_switched_off(iris_store: ModelStore) -> None:
    with serve(iris_store, drift_window=0) as client:
        client.post("/predict", json={"instances": [IRIS_ROW]})
        report = client.get("/drift").json()
    assert report["available"] is False and "disabled" in report["reason"]
