"""Estimator registry and hyperparameter errors (exit 2 with scikit-learn's own message)."""

from __future__ import annotations

import typing

import numpy as np
import pytest
import skops.io
from modelyard_training.catalog import CLASSIFIER_TYPES, EstimatorType, task_of
from modelyard_training.errors import EXIT_INVALID, InvalidHyperparameters, TrainingError
from modelyard_training.estimators import (
    REGISTRY,
    build_estimator,
    effective_hyperparameters,
    fit,
    skops_trusted_types,
)

ALL_TYPES = list(typing.get_args(EstimatorType))


def test_registry_covers_exactly_the_catalog() -> None:
    assert set(REGISTRY) == set(ALL_TYPES)
    assert {t for t in ALL_TYPES if task_of(t) == "classification"} == set(CLASSIFIER_TYPES)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator_type", ALL_TYPES)
def test_every_estimator_fits_with_defaults(estimator_type: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int) if task_of(estimator_type) == "classification" else x[:, 0] * 2.0
    params = effective_hyperparameters(estimator_type, {"max_iter": 50} if "mlp" in estimator_type else {}, 7)
    estimator = build_estimator(estimator_type, params)
    fit(estimator, estimator_type, False, x, y)
    # MLflow saves with skops and refuses a model it could not load back: every registry type
    # must round-trip with the trusted types the training code declares.
    restored = skops.io.loads(skops.io.dumps(estimator), trusted=skops_trusted_types(estimator))
    assert np.array_equal(restored.predict(x), estimator.predict(x))


def test_out_of_range_value_fails_before_fit_with_sklearn_message() -> None:
    with pytest.raises(InvalidHyperparameters) as caught:
        build_estimator("logistic_regression", {"C": -1})
    assert caught.value.exit_code == EXIT_INVALID
    message = caught.value.message
    assert message.startswith("spec.estimator.hyperparameters: logistic_regression:")
    assert "The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]. Got -1 instead." in message


def test_unknown_name_lists_valid_parameters() -> None:
    with pytest.raises(
        InvalidHyperparameters, match="Invalid parameter 'n_trees' for estimator RandomForestClassifier"
    ):
        build_estimator("random_forest_classifier", {"n_trees": 10})


def test_wrong_type_is_invalid() -> None:
    with pytest.raises(InvalidHyperparameters, match="n_estimators"):
        build_estimator("random_forest_classifier", {"n_estimators": "many"})


def test_combination_rejected_only_at_fit_is_still_a_hyperparameter_error() -> None:
    # The declared constraint accepts any array-like; the value check lives inside fit().
    estimator = build_estimator("mlp_classifier", {"hidden_layer_sizes": [0]})
    x = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(InvalidHyperparameters, match="hidden_layer_sizes must be > 0"):
        fit(estimator, "mlp_classifier", True, x, np.array([0, 1] * 10))


def test_fit_error_with_default_hyperparameters_is_a_training_error() -> None:
    estimator = build_estimator("logistic_regression", {})
    with pytest.raises(TrainingError):
        fit(estimator, "logistic_regression", False, np.zeros((4, 2)), np.array([0, 0, 0, 0]))


def test_seed_becomes_random_state_unless_set() -> None:
    assert effective_hyperparameters("random_forest_classifier", {}, 5)["random_state"] == 5
    assert effective_hyperparameters("random_forest_classifier", {"random_state": 1}, 5)["random_state"] == 1
    assert "random_state" not in effective_hyperparameters("knn_classifier", {}, 5)


def test_json_lists_are_accepted_where_sklearn_takes_sequences() -> None:
    estimator = build_estimator("mlp_classifier", {"hidden_layer_sizes": [8, 4], "max_iter": 20})
    assert estimator.get_params()["hidden_layer_sizes"] == [8, 4]
