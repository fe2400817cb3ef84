"""Loads one registered model and predicts with the native sklearn flavor.

Loading fetches the MLmodel file and the estimator (artifacts.py), reads the signature and
``metadata["modelyard_profile"]``, and derives once everything the hot path needs (feature
order, column kinds, class labels as JSON-ready values), so a request only does validation,
one estimator call and serialisation.

mlflow and sklearn are imported lazily, by the load: together they cost seconds, and
``create_app`` must stay import-cheap and side-effect free so /healthz answers while the model
is still loading.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .drift import FeatureReference, ProfileError, parse_profile
from .errors import PredictionFailed
from .imports import import_model_libraries
from .signature import InputSpec, ModelLoadError, input_spec_from

log = logging.getLogger("modelyard_serving.model_store")

PROFILE_KEY = "modelyard_profile"

LoadState = Literal["loading", "ready", "failed"]


@dataclass
class Prediction:
    predictions: list[Any]
    probabilities: np.ndarray | None


@dataclass
class LoadedModel:
    name: str
    version: str
    estimator: Any
    inputs: InputSpec
    classes: list[Any] | None
    has_proba: bool
    profile: list[FeatureReference] | None
    profile_error: str | None
    load_seconds: float
    flavor: str = "sklearn"

    def predict(self, rows: np.ndarray) -> Prediction:
        """Predict validated float64 rows. Estimator failures become 422, never 500.

        For classifiers with ``predict_proba`` the prediction is the most probable class, so a
        response never shows a label that disagrees with its own probabilities and the model
        is called once, not twice.
        """
        try:
            if self.has_proba and self.classes is not None:
                proba = np.asarray(self.estimator.predict_proba(rows), dtype=np.float64)
                labels = self.classes
                return Prediction([labels[i] for i in proba.argmax(axis=1).tolist()], proba)
            return Prediction(np.asarray(self.estimator.predict(rows)).tolist(), None)
        except Exception as exc:
            # Validation should have caught anything malformed; whatever still trips the
            # estimator is a property of this input, so report it as such (and log it).
            log.warning("estimator rejected input: %r", exc)
            raise PredictionFailed(f"the model could not predict this input: {type(exc).__name__}: {exc}") from exc


class ModelStore:
    """Holds the served model and its load state for /readyz."""

    def __init__(self, model_uri: str, *, name: str | None = None, version: str | None = None) -> None:
        self.model_uri = model_uri
        self._name = name
        self._version = version
        self.state: LoadState = "loading"
        self.error: str | None = None
        self.attempts = 0
        self.model: LoadedModel | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.model is not None

    def load(self) -> LoadedModel:
        """Download and load the model (blocking); records the outcome for readiness."""
        with self._lock:
            self.attempts += 1
            started = time.monotonic()
            try:
                model = self._load(started)
            except Exception as exc:
                self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
                raise
            self.model, self.state, self.error = model, "ready", None
            return model

    def _load(self, started: float) -> LoadedModel:
        if not self.model_uri:
            raise ModelLoadError("MODELYARD_MODEL_URI is not set")
        from .artifacts import fetch_sklearn_model, resolve

        import_model_libraries()
        source = resolve(self.model_uri)
        workdir = Path(tempfile.mkdtemp(prefix="modelyard-model-"))
        try:
            fetched = fetch_sklearn_model(source, workdir)
        finally:
            # The estimator is in memory now; the files are not needed (and /tmp may be small).
            shutil.rmtree(workdir, ignore_errors=True)
        estimator = fetched.estimator
        inputs = input_spec_from(fetched.inputs, estimator)
        profile, profile_error = _read_profile(fetched.metadata, inputs)
        classes = getattr(estimator, "classes_", None)
        return LoadedModel(
            # Explicit settings win, then the registry identity the URI resolved to.
            name=self._name or source.name or "model",
            version=str(self._version or source.version or "unknown"),
            estimator=estimator,
            inputs=inputs,
            classes=None if classes is None else np.asarray(classes).tolist(),
            has_proba=hasattr(estimator, "predict_proba"),
            profile=profile,
            profile_error=profile_error,
            load_seconds=time.monotonic() - started,
        )


def _read_profile(metadata: dict[str, Any], inputs: InputSpec) -> tuple[list[FeatureReference] | None, str | None]:
    """A missing or broken profile only disables drift; it never fails the load."""
    raw = metadata.get(PROFILE_KEY)
    if raw is None:
        return None, f"model has no {PROFILE_KEY} metadata"
    try:
        refs = parse_profile(raw, list(inputs.names) if inputs.names else None)
    except (ProfileError, ValueError) as exc:
        log.warning("ignoring unusable drift profile: %s", exc)
        return None, f"unusable {PROFILE_KEY}: {exc}"
    if len(refs) != inputs.n_features:
        return None, f"{PROFILE_KEY} has {len(refs)} features, model has {inputs.n_features}"
    return refs, None
