"""The reference profile shape and binning rule from docs/contracts.md."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from modelyard_training.profile import bin_fractions, build_profile


def test_uniform_feature_gets_nine_cuts_and_equal_fractions() -> None:
    frame = pd.DataFrame({"x": np.arange(1, 101, dtype=float)})
    profile = build_profile(frame)
    assert (profile["version"], profile["sampleCount"], profile["bins"]) == (1, 100, 10)
    (feature,) = profile["features"]
    assert feature["name"] == "x"
    assert feature["cuts"] == pytest.approx(np.quantile(frame["x"], np.arange(1, 10) / 10))
    assert len(feature["expected"]) == len(feature["cuts"]) + 1 == 10
    assert feature["expected"] == pytest.approx([0.1] * 10)


def test_duplicate_cuts_are_dropped_for_discrete_features() -> None:
    frame = pd.DataFrame({"zeros": np.zeros(100), "binary": np.array([0.0] * 85 + [1.0] * 15)})
    zeros, binary = build_profile(frame)["features"]
    assert zeros["cuts"] == [0.0] and zeros["expected"] == [1.0, 0.0]
    # 85% zeros: the inner deciles collapse onto 0 and 1; x == cut falls in the lower bin.
    assert binary["cuts"] == [0.0, 1.0]
    assert binary["expected"] == pytest.approx([0.85, 0.15, 0.0])


def test_bin_rule_is_searchsorted_left() -> None:
    cuts = [1.0, 2.0]
    values = np.array([0.5, 1.0, 1.5, 2.0, 2.5])
    # bin 0: x <= 1; bin 1: 1 < x <= 2; bin 2: x > 2
    assert bin_fractions(cuts, values).tolist() == pytest.approx([0.4, 0.4, 0.2])


def test_expected_sums_to_one_and_profile_is_json() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=333), "b": rng.exponential(size=333), "c": rng.integers(0, 3, 333)})
    profile = build_profile(frame, bins=7)
    for feature in profile["features"]:
        assert sum(feature["expected"]) == pytest.approx(1.0)
        assert feature["cuts"] == sorted(set(feature["cuts"]))
        assert len(feature["cuts"]) <= 6
    assert json.loads(json.dumps(profile)) == profile


def test_needs_two_bins() -> None:
    with pytest.raises(ValueError):
        build_profile(pd.DataFrame({"x": [1.0, 2.0]}), bins=1)
