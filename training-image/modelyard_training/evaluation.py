"""Test-split metrics (names fixed by docs/contracts.md) and the confusion-matrix figure."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from .catalog import Task

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def evaluate(estimator: BaseEstimator, task: Task, x_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    predicted = estimator.predict(x_test)
    # NaN (e.g. r2 on a one-row test split) cannot travel in the JSON termination message.
    return {
        name: value
        for name, value in _metrics(estimator, task, x_test, y_test, predicted).items()
        if math.isfinite(value)
    }


def _metrics(
    estimator: BaseEstimator, task: Task, x_test: np.ndarray, y_test: np.ndarray, predicted: np.ndarray
) -> dict[str, float]:
    if task == "regression":
        return {
            "rmse": float(math.sqrt(mean_squared_error(y_test, predicted))),
            "mae": float(mean_absolute_error(y_test, predicted)),
            "r2": float(r2_score(y_test, predicted)),
        }
    metrics = {
        "accuracy": float(accuracy_score(y_test, predicted)),
        # zero_division=0: a class the model never predicts scores 0 instead of warning.
        "precision_macro": float(precision_score(y_test, predicted, average="macro", zero_division=0)),
        "recall_macro": float(recall_score(y_test, predicted, average="macro", zero_division=0)),
        "f1_macro": float(f1_score(y_test, predicted, average="macro", zero_division=0)),
    }
    auc = _roc_auc(estimator, x_test, y_test)
    if auc is not None:
        metrics["roc_auc"] = auc
    return metrics


def _roc_auc(estimator: Any, x_test: np.ndarray, y_test: np.ndarray) -> float | None:
    """One-vs-rest ROC-AUC where it is defined: the estimator must score classes (SVC without
    probability=True gives only a decision function, enough for binary) and the test split must
    hold more than one class."""
    classes = estimator.classes_
    if len(np.unique(y_test)) < 2:
        return None
    try:
        if hasattr(estimator, "predict_proba"):
            scores = estimator.predict_proba(x_test)
            if len(classes) == 2:
                return float(roc_auc_score(y_test, scores[:, 1]))
            return float(roc_auc_score(y_test, scores, multi_class="ovr", labels=classes))
        if len(classes) == 2 and hasattr(estimator, "decision_function"):
            return float(roc_auc_score(y_test, estimator.decision_function(x_test)))
    except (ValueError, AttributeError):
        # e.g. a test split missing a class the model knows: ovr AUC is undefined there.
        return None
    return None


def confusion_matrix_figure(y_test: np.ndarray, predicted: np.ndarray, labels: np.ndarray) -> Figure:
    # Imported here: matplotlib costs ~0.4 CPU-s to import and only classifiers are plotted (and
    # champion scoring imports this module without plotting). A bare Figure needs no pyplot
    # backend or figure registry (so no display and nothing to close); savefig renders with Agg.
    from matplotlib.figure import Figure

    size = max(4.0, 0.5 * len(labels) + 2.0)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ConfusionMatrixDisplay.from_predictions(y_test, predicted, labels=labels, ax=ax, colorbar=False)
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    return fig
