"""The serving state one app owns: the model store, metrics, drift, and the load loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from .batching import MicroBatcher
from .drift import DriftSnapshot, DriftTracker
from .errors import NotReady, PredictionFailed
from .metrics import ServingMetrics
from .mirror import Mirror
from .model_store import LoadedModel, ModelStore, Prediction
from .settings import ServingSettings

log = logging.getLogger("modelyard_serving.runtime")

_FIRST_RETRY_SECONDS = 1.0
_NAME_IN_URI = re.compile(r"^models:/(?P<name>[^/@]+)")


class Runtime:
    def __init__(self, settings: ServingSettings, store: ModelStore) -> None:
        self.settings = settings
        self.store = store
        self.metrics = ServingMetrics()
        self.model: LoadedModel | None = None
        self.drift: DriftTracker | None = None
        self.drift_reason = "model not loaded yet"
        self.metrics.add_drift(self.drift_snapshot)
        self.batcher: MicroBatcher | None = None
        self.mirror = Mirror(settings, self.metrics) if settings.shadow_url else None

    @property
    def expected_name(self) -> str:
        """The model name before loading (for OIP 404s): settings, else the URI."""
        if self.model is not None:
            return self.model.name
        match = _NAME_IN_URI.match(self.store.model_uri)
        return self.settings.model_name or (match["name"] if match else "model")

    def require_model(self) -> LoadedModel:
        model = self.model
        if model is None:
            raise NotReady(f"model is not loaded yet (state: {self.store.state})")
        return model

    @contextlib.asynccontextmanager
    async def lifespan(self, _: object) -> AsyncIterator[None]:
        """The app's lifespan: start loading (or serve a model the caller already loaded)."""
        if self.store.model is not None:
            self.activate(self.store.model)
            yield
            return
        loader = asyncio.create_task(self.load_until_ready())
        try:
            yield
        finally:
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            if self.mirror is not None:
                await self.mirror.close()

    async def load_until_ready(self) -> None:
        """Load in a worker thread so /healthz and /readyz answer meanwhile; on failure stay
        not-ready and retry with capped backoff (a registry outage heals, a broken artifact
        keeps failing and keeps the pod out of the Service)."""
        delay = _FIRST_RETRY_SECONDS
        while self.model is None:
            try:
                model = await asyncio.to_thread(self.store.load)
            except Exception as exc:
                self.metrics.load_failures.inc()
                log.error(
                    "model load failed",
                    extra={"modelUri": self.store.model_uri, "error": self.store.error},
                    exc_info=exc,
                )
                if self.settings.load_retry_max_seconds <= 0:
                    return
                await asyncio.sleep(min(delay, self.settings.load_retry_max_seconds))
                delay *= 2
                continue
            self.activate(model)

    def activate(self, model: LoadedModel) -> None:
        """Start serving ``model``; runs on the event loop thread, where predictions run."""
        import sklearn

        # Rows are checked for NaN/inf before they reach the estimator (check_finite), so
        # sklearn's own scan is redundant. sklearn's config is thread-local: this affects
        # only the loop thread, which is the one that predicts.
        sklearn.set_config(assume_finite=True)
        self.metrics.set_model(model.name, model.version, model.flavor, model.load_seconds)
        window = self.settings.drift_window
        if window == 0:
            self.drift_reason = "drift tracking is disabled (MODELYARD_DRIFT_WINDOW=0)"
        elif model.profile is None:
            self.drift_reason = model.profile_error or "model has no reference profile"
        else:
            self.drift = DriftTracker(model.profile, window)
        # mlflow, sklearn and friends leave ~350k long-lived objects that every full garbage
        # collection would walk again: 200+ ms stalls that become the p99. Freezing moves them
        # out of the collector's view, so collections only scan what requests allocate.
        gc.collect()
        gc.freeze()
        if self.settings.max_batch_size > 1:
            self.batcher = MicroBatcher(
                functools.partial(self._predict_rows, model),
                max_rows=self.settings.max_batch_size,
                max_delay=self.settings.max_batch_delay_ms / 1000,
                observe_batch=self.metrics.batch_requests.observe,
            )
        # Published last: the first request that sees the model also sees its drift tracker.
        self.model = model
        log.info(
            "model ready",
            extra={
                "modelName": model.name,
                "modelVersion": model.version,
                "loadSeconds": round(model.load_seconds, 3),
                "drift": self.drift is not None,
            },
        )

    async def predict(self, model: LoadedModel, rows: np.ndarray) -> Prediction:
        """Predict one request's validated rows, sharing the estimator call with concurrent
        requests when micro-batching is on (batching.py)."""
        batcher = self.batcher
        try:
            if batcher is not None and model is self.model:
                result = await batcher.predict(rows)
            else:
                result = self._predict_rows(model, rows)
        except PredictionFailed:
            # Counted apart from 422s for bad input: a canary gate compares these per version.
            self.metrics.count_model_error()
            raise
        if self.mirror is not None:
            self.mirror.offer(rows, result.predictions, model.classes is not None)
        return result

    def _predict_rows(self, model: LoadedModel, rows: np.ndarray) -> Prediction:
        """One estimator call, for one request or a batch of them, and its bookkeeping."""
        result = model.predict(rows)
        self.metrics.count_predictions(result.predictions)
        if self.drift is not None:
            self.drift.observe(rows)
        return result

    def drift_snapshot(self) -> DriftSnapshot | None:
        return self.drift.snapshot() if self.drift is not None else None

    def drift_report(self) -> dict[str, Any]:
        """``GET /drift`` in the shape of docs/contracts.md."""
        snap = self.drift_snapshot()
        if snap is None:
            return {
                "available": False,
                "reason": self.drift_reason,
                "referenceVersion": self.model.version if self.model else None,
            }
        assert self.model is not None
        return {
            "available": True,
            "referenceVersion": self.model.version,
            "windowSize": snap.window_size,
            "windowCapacity": snap.capacity,
            "score": snap.score,
            "features": snap.features,
        }
