"""Fixtures for the training unit tests: config builders and one temporary MLflow store.

The store is a sqlite database plus an artifact directory under a temp dir, shared by a test
module: creating and migrating a fresh MLflow database costs seconds, so tests isolate by unique
model names and TrainingRun uids instead.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BASE_CONFIG: dict[str, Any] = {
    "mode": "single",
    "run": {"namespace": "ml", "name": "iris-1", "uid": "uid-0"},
    "spec": {
        "model": {"name": "iris"},
        "estimator": {"type": "logistic_regression", "hyperparameters": {"max_iter": 500}},
        "dataset": {"builtin": "iris"},
    },
}


def make_config(**spec_overrides: Any) -> dict[str, Any]:
    """A valid config dict; keyword arguments replace top-level spec fields (camelCase)."""
    config = copy.deepcopy(BASE_CONFIG)
    for key, value in spec_overrides.items():
        if value is None:
            config["spec"].pop(key, None)
        else:
            config["spec"][key] = value
    return config


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Store:
    tracking_uri: str
    root: Path

    def env(self, config_json: str, **extra: str) -> dict[str, str]:
        """An entrypoint environment for `modelyard_training.__main__.run`."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MODELYARD_TRAINING_CONFIG": config_json,
            "MODELYARD_TERMINATION_LOG": str(self.root / f"termination-{uuid.uuid4().hex[:6]}"),
            **extra,
        }


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    root = tmp_path_factory.mktemp("mlflow")
    # The code under test calls mlflow.set_tracking_uri, which also exports MLFLOW_TRACKING_URI
    # into os.environ; both are restored so later tests and their subprocesses see no trace.
    previous_global = tracking_utils._tracking_uri
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    previous_cwd = Path.cwd()
    # Experiments created by the code under test get the store's default artifact root, which
    # for a sqlite store is ./mlruns: run the module from the temp dir so nothing lands in the
    # repo (module scope keeps the chdir away from other components' tests).
    os.chdir(root)
    try:
        yield Store(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", root=root)
    finally:
        os.chdir(previous_cwd)
        mlflow.set_tracking_uri(previous_global)  # type: ignore[arg-type]  # None resets it
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env
