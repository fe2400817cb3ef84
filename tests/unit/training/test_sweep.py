"""Sweep trial parameters are a pure function of (spec, index); best-trial choice."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from modelyard_training.config import Objective, SweepSpec
from modelyard_training.sweep import TrialOutcome, grid_axis, grid_size, pick_best, trial_params


def sweep(**fields: Any) -> SweepSpec:
    return SweepSpec.model_validate({"trials": 4, **fields})


def test_grid_follows_product_order_over_sorted_names_and_wraps() -> None:
    spec = sweep(space={"max_iter": {"values": [100, 200]}, "C": {"values": [0.1, 1.0, 10.0]}})
    expected = [{"C": c, "max_iter": m} for c, m in itertools.product([0.1, 1.0, 10.0], [100, 200])]
    assert grid_size(spec) == 6
    assert [trial_params(spec, i, 42) for i in range(6)] == expected
    assert trial_params(spec, 6, 42) == expected[0]
    assert trial_params(spec, 13, 42) == expected[1]


def test_grid_ranges_become_evenly_spaced_points() -> None:
    assert grid_axis(SweepSpec.model_validate({"trials": 1, "space": {"x": {"min": 0, "max": 1}}}).space["x"]) == [
        0.0,
        0.25,
        0.5,
        0.75,
        1.0,
    ]
    log_axis = grid_axis(sweep(space={"C": {"min": 0.01, "max": 100, "log": True}}).space["C"])
    assert log_axis == pytest.approx([0.01, 0.1, 1.0, 10.0, 100.0])
    assert grid_axis(sweep(space={"k": {"min": 2, "max": 4, "type": "int"}}).space["k"]) == [2, 3, 4]
    wide = grid_axis(sweep(space={"k": {"min": 1, "max": 100, "type": "int"}}).space["k"])
    assert wide[0] == 1 and wide[-1] == 100 and all(isinstance(v, int) for v in wide)


def test_random_is_deterministic_per_seed_and_index() -> None:
    spec = sweep(
        strategy="random",
        space={
            "C": {"min": 0.001, "max": 1000, "log": True},
            "max_depth": {"min": 2, "max": 12, "type": "int"},
            "criterion": {"values": ["gini", "entropy", "log_loss"]},
        },
    )
    draws = [trial_params(spec, i, 42) for i in range(20)]
    assert draws == [trial_params(spec, i, 42) for i in range(20)]  # any pod recomputes the same point
    assert len({tuple(sorted(d.items())) for d in draws}) == 20
    assert trial_params(spec, 0, 42) == trial_params(spec, 1, 41)  # seeded by seed + index
    assert trial_params(spec, 0, 43) != trial_params(spec, 0, 42)
    for draw in draws:
        assert 0.001 <= draw["C"] <= 1000
        assert isinstance(draw["max_depth"], int) and 2 <= draw["max_depth"] <= 12
        assert draw["criterion"] in ("gini", "entropy", "log_loss")


def test_negative_index_is_rejected() -> None:
    with pytest.raises(ValueError):
        trial_params(sweep(space={"C": {"values": [1]}}), -1, 0)


def outcome(trial: int, **metrics: float) -> TrialOutcome:
    return TrialOutcome(trial=trial, run_id=f"run-{trial}", metrics=metrics, model_uri=f"models:/m-{trial}")


def test_pick_best_by_direction_with_ties_to_lowest_index() -> None:
    trials = [
        outcome(0, accuracy=0.9, rmse=3.0),
        outcome(1, accuracy=0.95, rmse=2.0),
        outcome(2, accuracy=0.95, rmse=1.0),
    ]
    best = pick_best(trials, Objective(metric="accuracy", direction="maximize"))
    assert best is not None and best.trial == 1
    best = pick_best(trials, Objective(metric="rmse", direction="minimize"))
    assert best is not None and best.trial == 2
    best = pick_best(trials, Objective(metric="rmse"))  # rmse defaults to minimize
    assert best is not None and best.trial == 2


def test_pick_best_skips_trials_without_the_metric() -> None:
    trials = [outcome(0, accuracy=0.99), outcome(1, accuracy=0.5, roc_auc=0.7), outcome(2, roc_auc=float("nan"))]
    best = pick_best(trials, Objective(metric="roc_auc", direction="maximize"))
    assert best is not None and best.trial == 1
    assert pick_best([outcome(0, accuracy=1.0)], Objective(metric="f1_macro")) is None
