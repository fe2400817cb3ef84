"""Fetch a model through MLflow, and only the files its sklearn flavor needs.

A logged model directory also holds conda.yaml, python_env.yaml, requirements.txt and the
input/serving examples (as large as the rows they hold), none of which the server reads. So
``MLmodel`` is fetched first, then only the file its sklearn flavor names (and the flavor's
code directory when one was logged). Downloads go through MLflow (``mlflow-artifacts:``
proxying), so pods hold no object-store credentials.

``MLmodel`` is read with PyYAML and ``mlflow.types.Schema``, and the estimator deserialized
here, rather than through ``mlflow.models.Model`` and ``mlflow.sklearn``: both import pandas at
module load (``mlflow.sklearn`` also the pyfunc machinery), about a second of start-up and the
largest package in the image, for code the native predict path never runs. The format dispatch
below mirrors ``mlflow.sklearn``'s loader, including its deserialization opt-out.
"""

from __future__ import annotations

import json
import pickle
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .imports import frozen_imports
from .signature import ModelLoadError

MLMODEL = "MLmodel"
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)/?$")


@dataclass(frozen=True)
class Source:
    """Where a model's files are: ``root``, plus the registry identity when the URI has one."""

    root: str
    name: str | None
    version: str | None


@dataclass(frozen=True)
class SklearnModel:
    estimator: Any
    inputs: Any  # mlflow.types.Schema of the signature's inputs, or None without a signature
    metadata: dict[str, Any]


def resolve(model_uri: str) -> Source:
    """Pin ``models:/name/version`` and ``models:/name@alias`` to one version's artifact root.

    An alias is resolved exactly once, so the version reported is the version downloaded even
    if the alias moves meanwhile. Other URIs (runs:/, paths, stages) are used as they are.
    """
    if match := _VERSION_URI.match(model_uri):
        name, version = match["name"], match["version"]
    elif match := _ALIAS_URI.match(model_uri):
        from mlflow import MlflowClient

        name = match["name"]
        version = str(MlflowClient().get_model_version_by_alias(name, match["alias"]).version)
    else:
        return Source(model_uri.rstrip("/"), None, None)
    from mlflow import MlflowClient

    return Source(MlflowClient().get_model_version_download_uri(name, version).rstrip("/"), name, version)


def fetch_sklearn_model(source: Source, workdir: Path) -> SklearnModel:
    """Download ``MLmodel`` and the sklearn flavor's files into ``workdir``; load the estimator."""
    mlmodel = yaml.safe_load(_download(source, MLMODEL, workdir).read_text())
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    if not isinstance(flavors, dict) or not isinstance(flavors.get("sklearn"), dict):
        found = sorted(flavors) if isinstance(flavors, dict) else []
        raise ModelLoadError(f"{source.root} has no sklearn flavor (flavors: {found})")
    flavor = flavors["sklearn"]
    if flavor.get("code"):
        _add_code(source, str(flavor["code"]))
    estimator = _deserialize(_download(source, str(flavor["pickled_model"]), workdir), flavor)
    return SklearnModel(estimator, _signature_inputs(mlmodel.get("signature")), mlmodel.get("metadata") or {})


def _download(source: Source, path: str, workdir: Path) -> Path:
    import mlflow.artifacts

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{source.root}/{path}", dst_path=str(workdir)))


def _signature_inputs(signature: Any) -> Any:
    """The signature's input schema; MLmodel stores it as a JSON string."""
    if not isinstance(signature, dict) or not signature.get("inputs"):
        return None
    from mlflow.types.schema import Schema

    raw = signature["inputs"]
    return Schema.from_json(raw if isinstance(raw, str) else json.dumps(raw))


def _deserialize(path: Path, flavor: dict[str, Any]) -> Any:
    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION

    # As mlflow.sklearn does: loading a model can run code from the artifact, skops included
    # (its trusted-types list comes from the model's own MLmodel).
    if not MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():
        raise ModelLoadError("model deserialization is disabled (MLFLOW_ALLOW_PICKLE_DESERIALIZATION is not true)")
    serialization = flavor.get("serialization_format", "pickle")
    if serialization == "skops":
        with frozen_imports():
            import skops.io

        return skops.io.load(path, trusted=flavor.get("skops_trusted_types"))
    with path.open("rb") as file:
        if serialization == "pickle":
            return pickle.load(file)
        if serialization == "cloudpickle":
            import cloudpickle

            return cloudpickle.load(file)
    raise ModelLoadError(f"unknown sklearn serialization_format {serialization!r}")


def _add_code(source: Source, code: str) -> None:
    """Modules logged with the model (``code_paths``) must stay importable after loading, since
    unpickled objects may import them lazily; so they get a directory of their own that is kept."""
    code_root = Path(tempfile.mkdtemp(prefix="modelyard-code-"))
    _download(source, code, code_root)
    sys.path.insert(0, str(code_root / Path(code).name))
