"""Loading: identity from the URI, aliases, signature handling, settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.sklearn
import numpy as np
import pytest
from mlflow.models import infer_signature
from modelyard_serving.model_store import ModelStore
from modelyard_serving.settings import ServingSettings
from modelyard_serving.signature import ModelLoadError
from sklearn.linear_model import LogisticRegression

from .conftest import IRIS_FEATURES, Registry, serve


def test_identity_and_signature_come_from_the_registry(iris_store: ModelStore) -> None:
    model = iris_store.model
    assert model is not None
    assert (model.name, model.version) == ("iris", "1")
    assert model.inputs.names == tuple(IRIS_FEATURES)
    assert model.inputs.all_float and not model.inputs.allow_nan
    assert model.classes == [0, 1, 2] and model.has_proba
    assert model.profile is not None and [f.name for f in model.profile] == IRIS_FEATURES
    assert iris_store.state == "ready" and iris_store.error is None


def test_explicit_name_and_version_win(registry: Registry) -> None:
    store = ModelStore(registry.iris, name="flowers", version="42")
    assert (store.load().name, store.model and store.model.version) == ("flowers", "42")


def test_alias_uris_resolve_to_the_version(registry: Registry) -> None:
    mlflow.MlflowClient().set_registered_model_alias("iris", "champion", "1")
    model = ModelStore("models:/iris@champion").load()
    assert (model.name, model.version) == ("iris", "1")


def _save(path: Path, estimator: LogisticRegression, **kwargs: Any) -> str:
    mlflow.sklearn.save_model(estimator, str(path), **kwargs)
    return str(path)


@pytest.fixture(scope="module")
def unnamed_estimator(registry: Registry) -> LogisticRegression:
    return LogisticRegression(max_iter=300).fit(registry.iris_data.to_numpy(), np.arange(150) % 3)


def test_models_without_signature_use_the_fitted_feature_count(
    tmp_path: Path, unnamed_estimator: LogisticRegression
) -> None:
    store = ModelStore(_save(tmp_path / "m", unnamed_estimator), name="plain", version="7")
    model = store.load()
    assert model.inputs.names is None and model.inputs.n_features == 4
    assert model.profile is None and model.profile_error and "modelyard_profile" in model.profile_error
    with serve(store) as client:
        assert client.post("/predict", json={"instances": [[1.0, 2.0, 3.0, 4.0]]}).status_code == 200
        refused = client.post("/predict", json={"inputs": [{"a": 1.0}]})
    assert refused.status_code == 422 and "no feature names" in refused.json()["error"]


def test_signature_that_disagrees_with_the_estimator_fails_the_load(
    tmp_path: Path, unnamed_estimator: LogisticRegression, registry: Registry
) -> None:
    three_columns = infer_signature(registry.iris_data.iloc[:, :3])
    store = ModelStore(_save(tmp_path / "m", unnamed_estimator, signature=three_columns))
    with pytest.raises(ModelLoadError, match="signature has 3 inputs but the estimator was fitted on 4"):
        store.load()
    assert store.state == "failed" and store.error and "ModelLoadError" in store.error


def test_tensor_signatures_are_supported(tmp_path: Path, unnamed_estimator: LogisticRegression) -> None:
    x = np.zeros((2, 4))
    store = ModelStore(_save(tmp_path / "m", unnamed_estimator, signature=infer_signature(x)))
    spec = store.load().inputs
    assert spec.names is None and spec.n_features == 4 and spec.all_float


def test_a_broken_profile_only_disables_drift(tmp_path: Path, unnamed_estimator: LogisticRegression) -> None:
    path = _save(tmp_path / "m", unnamed_estimator, metadata={"modelyard_profile": {"version": 1, "features": "?"}})
    model = ModelStore(path).load()
    assert model.profile is None and model.profile_error and "unusable" in model.profile_error


def test_empty_uri_is_a_clear_load_error() -> None:
    with pytest.raises(ModelLoadError, match="MODELYARD_MODEL_URI is not set"):
        ModelStore("").load()


def test_settings_come_from_modelyard_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_MODEL_URI", "models:/iris/3")
    monkeypatch.setenv("MODELYARD_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("MODELYARD_API_KEY", "topsecret-key")
    monkeypatch.setenv("MODELYARD_DRIFT_WINDOW", "500")
    s = ServingSettings()
    assert (s.model_uri, s.max_body_bytes, s.drift_window, s.port, s.host) == (
        "models:/iris/3",
        2048,
        500,
        8080,
        "0.0.0.0",
    )
    assert s.api_key is not None and s.api_key.get_secret_value() == "topsecret-key"
    assert "topsecret-key" not in repr(s)  # the key never shows up in logs of the settings


def test_only_mlmodel_and_the_estimator_file_are_downloaded(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logged models also carry environments and input examples; serving fetches neither."""
    frame = registry.iris_data
    fitted = LogisticRegression(max_iter=300).fit(frame.to_numpy(), np.arange(150) % 3)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            fitted, name="model", input_example=frame.head(3), registered_model_name="iris-with-example"
        )
    location = Path(mlflow.MlflowClient().get_logged_model(info.model_id).artifact_location.removeprefix("file://"))
    assert {"input_example.json", "conda.yaml", "requirements.txt"} <= {p.name for p in location.iterdir()}
    fetched: list[str] = []
    real = mlflow.artifacts.download_artifacts

    def recording(artifact_uri: str, **kwargs: Any) -> str:
        fetched.append(artifact_uri.rsplit("/", 1)[-1])
        return str(real(artifact_uri=artifact_uri, **kwargs))

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", recording)
    model = ModelStore(f"models:/iris-with-example/{info.registered_model_version}").load()
    assert fetched == ["MLmodel", "model.skops"]
    assert model.inputs.n_features == 4 and model.has_proba


def test_an_alias_is_resolved_once_so_the_reported_version_is_the_one_served(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("iris", "moving", "1")
    lookups = []
    real = mlflow.MlflowClient.get_model_version_by_alias

    def once(self: mlflow.MlflowClient, name: str, alias: str) -> Any:
        lookups.append(alias)
        return real(self, name, alias)

    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", once)
    assert ModelStore("models:/iris@moving").load().version == "1"
    assert lookups == ["moving"]


# What the serving image leaves out (serving/pyproject.toml, serving/lock-excludes.txt): loading
# and predicting must not import any of it.
_NOT_IN_THE_IMAGE = (
    "pandas", "git", "google.auth", "cryptography", "prettytable", "wcwidth", "mlflow.sklearn", "mlflow.pyfunc"
)
_LOAD_WITHOUT = """
import importlib.abc, sys
blocked = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ModuleNotFoundError(f"{{name}} is not in the serving image", name=name)
sys.meta_path.insert(0, Block())
import numpy as np
from modelyard_serving.model_store import ModelStore
model = ModelStore({uri!r}).load()
print(model.predict(np.array([[5.1, 3.5, 1.4, 0.2]])).predictions)
"""


@pytest.mark.parametrize("name", ["iris", "iris-hgb"])  # skops and cloudpickle
def test_loading_needs_nothing_the_serving_image_leaves_out(registry: Registry, name: str) -> None:
    # The model's own artifact location: the tests' sqlite registry is tracking-server code
    # (sqlalchemy, cryptography) standing in for the MLflow server pods reach over HTTP.
    location = mlflow.MlflowClient().get_model_version_download_uri(name, "1")
    code = _LOAD_WITHOUT.format(blocked=_NOT_IN_THE_IMAGE, uri=location)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[0]"


_LOAD_ORDER = """
import gc, sys
from modelyard_serving.model_store import ModelStore
ModelStore({uri!r}).load()
names = list(sys.modules)
print(names.index("scipy.special") < names.index("mlflow"), gc.isenabled(), gc.get_freeze_count() > 100_000)
"""


def test_a_load_imports_scipy_before_mlflow_with_the_collector_paused(registry: Registry) -> None:
    """skops scans sys.modules up to scipy.special at import (imports.py): MLflow before SciPy
    made that scan ~0.5 CPU s longer. The imports' objects end up frozen, out of the collector's way."""
    location = mlflow.MlflowClient().get_model_version_download_uri("iris", "1")
    code = _LOAD_ORDER.format(uri=location)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "True", "True"]
