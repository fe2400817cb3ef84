"""Names shared by config validation and training: estimator types, tasks and metric names.

Kept free of scikit-learn imports so config validation stays cheap and can name a bad metric
before anything heavy loads.
"""

from __future__ import annotations

from typing import Literal

Task = Literal["classification", "regression"]

EstimatorType = Literal[
    "logistic_regression",
    "random_forest_classifier",
    "gradient_boosting_classifier",
    "svc",
    "knn_classifier",
    "mlp_classifier",
    "linear_regression",
    "ridge",
    "random_forest_regressor",
    "gradient_boosting_regressor",
    "svr",
    "knn_regressor",
    "mlp_regressor",
]

CLASSIFIER_TYPES: frozenset[str] = frozenset(
    {
        "logistic_regression",
        "random_forest_classifier",
        "gradient_boosting_classifier",
        "svc",
        "knn_classifier",
        "mlp_classifier",
    }
)

BuiltinDataset = Literal["iris", "wine", "breast_cancer", "digits", "diabetes"]

# diabetes is the one built-in regression dataset; the rest are classification.
BUILTIN_TASKS: dict[str, Task] = {
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "digits": "classification",
    "diabetes": "regression",
}

CLASSIFIER_METRICS: tuple[str, ...] = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc")
REGRESSOR_METRICS: tuple[str, ...] = ("rmse", "mae", "r2")

# Error metrics improve downwards; used to default a sweep objective's direction.
LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae"})


def task_of(estimator_type: str) -> Task:
    return "classification" if estimator_type in CLASSIFIER_TYPES else "regression"


def metrics_for(task: Task) -> tuple[str, ...]:
    return CLASSIFIER_METRICS if task == "classification" else REGRESSOR_METRICS
