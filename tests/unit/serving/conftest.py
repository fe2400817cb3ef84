"""Real models in a real (throwaway, sqlite-backed) MLflow registry, and clients for the server.

Models are logged the way modelyard training logs them (docs/contracts.md): fitted on a float64
numpy array, signature inferred from the DataFrame, reference profile in the MLmodel metadata.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow.models import infer_signature
from modelyard_serving.app import create_app
from modelyard_serving.model_store import ModelStore
from modelyard_serving.settings import ServingSettings
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
IRIS_FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def make_profile(frame: pd.DataFrame, bins: int = 10) -> dict[str, Any]:
    """The reference profile as training writes it: inner quantile cuts + bin fractions."""
    features = []
    for column in frame.columns:
        values = frame[column].to_numpy(np.float64)
        cuts = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(cuts, values, side="left"), minlength=len(cuts) + 1)
        features.append({"name": column, "cuts": cuts.tolist(), "expected": (counts / len(values)).tolist()})
    return {"version": 1, "sampleCount": len(frame), "bins": bins, "features": features}


@dataclass(frozen=True)
class Registry:
    root: Path
    iris_data: pd.DataFrame
    iris: str  # LogisticRegression with profile
    iris_no_profile: str
    regressor: str  # LinearRegression on diabetes (10 features), with profile
    nan_tolerant: str  # HistGradientBoosting (allows NaN)
    corrupt: str  # registered, but its pickled model is garbage


def _log(
    estimator: Any, frame: pd.DataFrame, target: pd.Series, name: str, profile: bool, **kwargs: Any
) -> tuple[str, str]:
    """Log and register; returns (models:/ URI, logged model id)."""
    fitted = estimator.fit(frame.to_numpy(np.float64), target.to_numpy())
    metadata = {"modelyard_profile": make_profile(frame)} if profile else None
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            fitted,
            name="model",
            signature=infer_signature(frame, target),
            metadata=metadata,
            registered_model_name=name,
            **kwargs,
        )
    return f"models:/{name}/{info.registered_model_version}", info.model_id


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("mlflow")
    previous_uri, previous_env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    experiment = mlflow.create_experiment("serving-tests", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)

    iris = load_iris(as_frame=True)
    diabetes = load_diabetes(as_frame=True)
    logistic = LogisticRegression(max_iter=500)
    models = [
        _log(logistic, iris.data, iris.target, "iris", profile=True),
        _log(logistic, iris.data, iris.target, "iris-plain", profile=False),
        _log(LinearRegression(), diabetes.data, diabetes.target, "diabetes", profile=True),
        # cloudpickle: skops refuses HistGradientBoosting's tree arrays as untrusted by default.
        _log(
            HistGradientBoostingClassifier(max_iter=5),
            *(iris.data, iris.target, "iris-hgb"),
            profile=False,
            serialization_format="cloudpickle",
        ),
        _log(logistic, iris.data, iris.target, "iris-corrupt", profile=False),
    ]
    # A registered version whose estimator file is garbage: what a bad promotion looks like.
    location = mlflow.MlflowClient().get_logged_model(models[-1][1]).artifact_location
    for path in Path(location.removeprefix("file://")).iterdir():
        if path.name.startswith("model.") and path.suffix in {".skops", ".pkl"}:
            path.write_bytes(b"this is not a model")
    yield Registry(root, iris.data, *(uri for uri, _ in models))

    mlflow.set_tracking_uri(previous_uri)
    if previous_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous_env


@pytest.fixture(scope="session")
def iris_store(registry: Registry) -> ModelStore:
    """Loaded once: the estimator is read-only, every app gets its own runtime around it."""
    store = ModelStore(registry.iris)
    store.load()
    return store


def settings(**overrides: Any) -> ServingSettings:
    values: dict[str, Any] = {"access_log": False, "load_retry_max_seconds": 0}
    values.update(overrides)
    return ServingSettings(**values)


@contextmanager
def serve(store: ModelStore, **overrides: Any) -> Iterator[TestClient]:
    """A client for a fresh app around ``store`` (lifespan running)."""
    app = create_app(settings(model_uri=store.model_uri, **overrides), store)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def wait_ready(client: TestClient, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"not ready after {timeout}s: {client.get('/readyz').json()}")


@pytest.fixture
def iris_client(iris_store: ModelStore) -> Iterator[TestClient]:
    with serve(iris_store) as client:
        yield client
