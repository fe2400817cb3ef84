"""MLflow error mapping, promotion rule and the package's import boundary."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, REQUEST_LIMIT_EXCEEDED
from modelyard_training.config import PromotionSpec
from modelyard_training.errors import MLflowUnavailable, TrainingError
from modelyard_training.promotion import threshold_decision
from modelyard_training.tracking import mlflow_guard

PACKAGE = Path(__file__).resolve().parents[3] / "training-image" / "modelyard_training"


def test_transport_failures_are_mlflow_unavailable() -> None:
    with pytest.raises(MLflowUnavailable, match="registering: MLflow is unreachable"), mlflow_guard("registering"):
        raise requests.exceptions.ConnectionError("refused")
    with pytest.raises(MLflowUnavailable, match="API request to"), mlflow_guard("logging"):
        raise MlflowException("API request to http://mlflow/api/2.0/x failed with exception Max retries exceeded")
    with pytest.raises(MLflowUnavailable), mlflow_guard("logging"):
        raise MlflowException("slow down", error_code=REQUEST_LIMIT_EXCEEDED)


def test_other_mlflow_errors_are_training_errors() -> None:
    with pytest.raises(TrainingError, match="registering: bad name"), mlflow_guard("registering"):
        raise MlflowException("bad name", error_code=INVALID_PARAMETER_VALUE)


def test_contract_failures_pass_through_unchanged() -> None:
    with pytest.raises(MLflowUnavailable, match=r"^as is$"), mlflow_guard("x"):
        raise MLflowUnavailable("as is")


@pytest.mark.parametrize(
    ("rule", "metrics", "passed", "why"),
    [
        ({"minValue": 0.9}, {"f1_macro": 0.95}, True, "passes"),
        ({"minValue": 0.9}, {"f1_macro": 0.9}, True, "passes"),  # the bar is inclusive
        ({"minValue": 0.9}, {"f1_macro": 0.85}, False, "below minValue 0.9"),
        ({"maxValue": 0.3}, {"f1_macro": 0.5}, False, "above maxValue 0.3"),
        ({"minValue": 0.1, "maxValue": 0.9}, {"f1_macro": 0.5}, True, "passes"),
        ({}, {"f1_macro": 0.1}, True, "passes"),  # no bar: always promote
        ({"minValue": 0.5}, {"accuracy": 0.99}, False, "was not logged"),
    ],
)
def test_promotion_decision(rule: dict[str, float], metrics: dict[str, float], passed: bool, why: str) -> None:
    promotion = PromotionSpec.model_validate({"alias": "champion", "metric": "f1_macro", **rule})
    decision = threshold_decision(promotion, metrics)
    decided, message = decision.promoted, decision.message
    assert decided is passed and why in message


def test_training_package_never_imports_serving_or_operator_frameworks() -> None:
    forbidden = {"fastapi", "kopf", "uvicorn", "starlette", "modelyard_operator", "modelyard_serving"}
    for source in PACKAGE.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & forbidden, f"{source.name} imports {names}"
