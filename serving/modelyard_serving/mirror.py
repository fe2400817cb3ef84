"""Shadow mirroring: a sample of live predictions is replayed to a candidate server.

During a Shadow rollout the operator points stable pods at the candidate (``MODELYARD_SHADOW_URL``,
a Service that exists only while a shadow candidate runs). After a prediction has been
computed for the client, :meth:`Mirror.offer` may schedule a background task that sends the
same validated rows to the candidate's ``/predict`` and compares its answer with ours, row by
row. The client's response never waits for it and never sees its failures:

- sampling is a coin toss per request (``MODELYARD_SHADOW_PERCENT``);
- at most ``max_in_flight`` mirrored requests run at once; beyond that a sample is dropped;
- after a connection failure (no candidate yet, or it went away) mirroring backs off for a
  few seconds instead of paying a failed connect per request.

Agreement is counted on stable's /metrics, by candidate version (taken from the candidate's
answer): the same predicted class for classifiers, a relative error within
``MODELYARD_SHADOW_TOLERANCE`` for regressors. The operator reads these counters.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .transport import dumps

if TYPE_CHECKING:
    import httpx

    from .metrics import ServingMetrics
    from .settings import ServingSettings

log = logging.getLogger("modelyard_serving.mirror")

SHADOW_HEADER = "X-Modelyard-Shadow"
_BACKOFF_SECONDS = 5.0


def agreement(ours: Sequence[Any] | np.ndarray, theirs: list[Any], classifier: bool,
              tolerance: float) -> tuple[int, int]:
    """(agreeing rows, disagreeing rows) of two prediction lists of equal length (pure)."""
    if len(theirs) != len(ours):
        return 0, len(ours)
    if classifier:
        labels = ours.tolist() if isinstance(ours, np.ndarray) else list(ours)
        agree = sum(1 for a, b in zip(labels, theirs, strict=True) if a == b)
        return agree, len(ours) - agree
    mine = np.asarray(ours, dtype=float).reshape(len(ours), -1)
    other = np.asarray(theirs, dtype=float).reshape(len(theirs), -1)
    if mine.shape != other.shape:
        return 0, len(ours)
    # Relative error per row (the worst output of a multi-output row), safe near zero.
    scale = np.maximum(np.abs(mine), 1e-12)
    close = np.all(np.abs(other - mine) / scale <= tolerance, axis=1)
    agree = int(close.sum())
    return agree, len(ours) - agree


class Mirror:
    """Sends sampled predictions to the shadow candidate and counts agreement."""

    def __init__(self, settings: ServingSettings, metrics: ServingMetrics, max_in_flight: int = 16) -> None:
        assert settings.shadow_url
        self.url = settings.shadow_url.rstrip("/") + "/predict"
        self.share = settings.shadow_percent / 100.0
        self.tolerance = settings.shadow_tolerance
        self.timeout = settings.shadow_timeout_seconds
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.headers = {"Content-Type": "application/json", SHADOW_HEADER: "1"}
        if settings.api_key is not None:  # the candidate serves the same ModelDeployment's key
            self.headers["X-API-Key"] = settings.api_key.get_secret_value()
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0

    def offer(self, rows: np.ndarray, predictions: Sequence[Any] | np.ndarray, classifier: bool) -> None:
        """Maybe mirror one request; returns at once (runs on the event loop thread)."""
        if random.random() >= self.share:
            return
        if time.monotonic() < self._paused_until or len(self._tasks) >= self.max_in_flight:
            self.metrics.count_shadow_request("dropped")
            return
        task = asyncio.get_running_loop().create_task(self._send(rows, predictions, classifier))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx  # only servers that mirror pay for the import

            self._client = httpx.AsyncClient(
                timeout=self.timeout, limits=httpx.Limits(max_connections=self.max_in_flight))
        return self._client

    async def _send(self, rows: np.ndarray, predictions: Sequence[Any] | np.ndarray, classifier: bool) -> None:
        try:
            await self._compare(rows, predictions, classifier)
        except asyncio.CancelledError:
            raise
        except Exception:  # a mirrored request must never surface anywhere but in metrics
            self.metrics.count_shadow_request("failed")
            log.warning("shadow comparison failed", exc_info=True)

    async def _compare(self, rows: np.ndarray, predictions: Sequence[Any] | np.ndarray,
                       classifier: bool) -> None:
        import httpx

        try:
            response = await self.client().post(
                self.url, content=dumps({"instances": rows}), headers=self.headers)
        except httpx.TransportError as exc:
            self._paused_until = time.monotonic() + _BACKOFF_SECONDS
            self.metrics.count_shadow_request("unreachable")
            log.debug("shadow candidate unreachable: %s", exc)
            return
        if response.status_code != 200:
            self.metrics.count_shadow_request(f"http_{response.status_code // 100}xx")
            return
        try:
            body = response.json()
            version = str(body["modelVersion"])
            theirs = list(body["predictions"])
        except (ValueError, KeyError, TypeError):
            self.metrics.count_shadow_request("invalid")
            return
        self.metrics.count_shadow_request("compared")
        agree, disagree = agreement(predictions, theirs, classifier, self.tolerance)
        self.metrics.count_shadow_rows(version, agree, disagree)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
