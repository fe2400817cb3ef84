"""The curated estimator registry and hyperparameter handling.

Hyperparameters are checked by scikit-learn itself, so the user sees the estimator's own message
(e.g. "The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]. Got -1
instead.") and the run fails with exit 2 before any retry is spent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.svm import SVC, SVR
from sklearn.utils._param_validation import InvalidParameterError

from .catalog import CLASSIFIER_TYPES
from .errors import InvalidHyperparameters, TrainingError

REGISTRY: dict[str, type[BaseEstimator]] = {
    "logistic_regression": LogisticRegression,
    "random_forest_classifier": RandomForestClassifier,
    "gradient_boosting_classifier": GradientBoostingClassifier,
    "svc": SVC,
    "knn_classifier": KNeighborsClassifier,
    "mlp_classifier": MLPClassifier,
    "linear_regression": LinearRegression,
    "ridge": Ridge,
    "random_forest_regressor": RandomForestRegressor,
    "gradient_boosting_regressor": GradientBoostingRegressor,
    "svr": SVR,
    "knn_regressor": KNeighborsRegressor,
    "mlp_regressor": MLPRegressor,
}

assert REGISTRY.keys() >= CLASSIFIER_TYPES


def effective_hyperparameters(estimator_type: str, hyperparameters: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The user's hyperparameters plus `random_state=seed` where the estimator is stochastic, so a
    rerun of the same spec reproduces the same model. An explicit random_state wins."""
    params = dict(hyperparameters)
    if "random_state" in REGISTRY[estimator_type]().get_params() and "random_state" not in params:
        params["random_state"] = seed
    return params


def build_estimator(estimator_type: str, hyperparameters: Mapping[str, Any]) -> BaseEstimator:
    """Instantiate and check hyperparameters now, so a bad value fails before data or MLflow."""
    estimator = REGISTRY[estimator_type]()
    try:
        estimator.set_params(**hyperparameters)
    except ValueError as exc:  # unknown parameter name
        raise _invalid(estimator_type, exc) from exc
    # scikit-learn validates parameter constraints inside fit(); _validate_params runs the same
    # check up front (it is private, hence the guard), so the error comes before any training.
    validate = getattr(estimator, "_validate_params", None)
    if callable(validate):
        try:
            validate()
        except (InvalidParameterError, ValueError, TypeError) as exc:
            raise _invalid(estimator_type, exc) from exc
    return estimator


def fit(estimator: BaseEstimator, estimator_type: str, user_set_params: bool, x: np.ndarray, y: np.ndarray) -> None:
    try:
        estimator.fit(x, y)
    except InvalidParameterError as exc:
        raise _invalid(estimator_type, exc) from exc
    except (ValueError, TypeError) as exc:
        # The data was validated before fit, so with user-set hyperparameters a ValueError here
        # is a combination the constraint check cannot see (e.g. solver='lbfgs' with
        # penalty='l1'). With defaults only, it is a genuine training failure.
        if user_set_params:
            raise _invalid(estimator_type, exc) from exc
        raise TrainingError(f"fitting {estimator_type} failed: {exc}") from exc


def skops_trusted_types(estimator: BaseEstimator) -> list[str]:
    """The scikit-learn internals (trees, KD-trees, optimizers) skops does not trust by default.
    MLflow refuses to save a model it could not load back, and the list is stored in the MLmodel
    so serving loads with it. Only scikit-learn/NumPy/SciPy types are vouched for: the estimator
    comes from the curated registry, so anything else would be a surprise worth failing on."""
    # Imported here: skops scans scikit-learn's public types on import (seconds), which the
    # fast failure paths (bad hyperparameters) should not pay for.
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
    return [name for name in untrusted if name.split(".", 1)[0] in ("sklearn", "numpy", "scipy")]


def _invalid(estimator_type: str, exc: Exception) -> InvalidHyperparameters:
    return InvalidHyperparameters(f"spec.estimator.hyperparameters: {estimator_type}: {exc}")
