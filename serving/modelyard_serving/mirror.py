"""Shadow mirroring: a sample of live predictions is replayed to a candidate server.

During a Shadow rollout the operator points stable pods at the candidate (``MODELYARD_SHADOW_URL``,
a Service that exists only while a shadow candidate runs). After a prediction has been
computed for the client, :meth:`Mirror.offer` may schedule a background task that sends the
same validated rows to the candidate's ``/predict`` and compares its answer with ours, row by
row. The client's response never waits for it and never sees its failures:

- sampling is a coin toss per request (``MODELYARD_SHADOW_PERCENT``), and sampled rows travel
  in small batches;
- at most ``max_in_flight`` batches are on their way at once; beyond that a batch is dropped;
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
    """Sends sampled predictions to the shadow candidate, in small batches, and counts agreement.

    Sampled rows are buffered and sent together, at most every ``flush_seconds`` or once
    ``max_rows`` are waiting: one HTTP request per batch instead of one per sampled request
    keeps mirroring's cost on the stable server small (see docs/benchmarks.md).
    """

    def __init__(self, settings: ServingSettings, metrics: ServingMetrics, *, max_rows: int = 100,
                 flush_seconds: float = 0.25, max_in_flight: int = 4) -> None:
        assert settings.shadow_url
        self.url = settings.shadow_url.rstrip("/") + "/predict"
        self.share = settings.shadow_percent / 100.0
        self.tolerance = settings.shadow_tolerance
        self.timeout = settings.shadow_timeout_seconds
        self.metrics = metrics
        self.max_rows, self.flush_seconds, self.max_in_flight = max_rows, flush_seconds, max_in_flight
        self.headers = {"Content-Type": "application/json", SHADOW_HEADER: "1"}
        if settings.api_key is not None:  # the candidate serves the same ModelDeployment's key
            self.headers["X-API-Key"] = settings.api_key.get_secret_value()
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0
        self._rows: list[np.ndarray] = []
        self._predictions: list[Any] = []
        self._buffered = 0
        self._classifier = True
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, rows: np.ndarray, predictions: Sequence[Any] | np.ndarray, classifier: bool) -> None:
        """Maybe mirror one request's rows; returns at once (runs on the event loop thread)."""
        if random.random() >= self.share:
            return
        self._rows.append(rows)
        self._predictions.extend(predictions.tolist() if isinstance(predictions, np.ndarray) else predictions)
        self._buffered += len(rows)
        self._classifier = classifier
        if self._buffered >= self.max_rows:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_seconds, self.flush)

    def flush(self) -> None:
        """Send what is buffered as one request (or drop it when too many are in flight)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._rows:
            return
        rows, predictions = self._rows, self._predictions
        self._rows, self._predictions, self._buffered = [], [], 0
        if len(self._tasks) >= self.max_in_flight or time.monotonic() < self._paused_until:
            self.metrics.count_shadow_batch("dropped")
            return
        batch = rows[0] if len(rows) == 1 else np.concatenate(rows)
        task = asyncio.get_running_loop().create_task(self._send(batch, predictions, self._classifier))
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
            self.metrics.count_shadow_batch("failed")
            log.warning("shadow comparison failed", exc_info=True)

    async def _compare(self, rows: np.ndarray, predictions: Sequence[Any] | np.ndarray,
                       classifier: bool) -> None:
        import httpx

        try:
            response = await self.client().post(
                self.url, content=dumps({"instances": rows}), headers=self.headers)
        except httpx.TransportError as exc:
            self._paused_until = time.monotonic() + _BACKOFF_SECONDS
            self.metrics.count_shadow_batch("unreachable")
            log.debug("shadow candidate unreachable: %s", exc)
            return
        if response.status_code != 200:
            self.metrics.count_shadow_batch(f"http_{response.status_code // 100}xx")
            return
        try:
            body = response.json()
            version = str(body["modelVersion"])
            theirs = list(body["predictions"])
        except (ValueError, KeyError, TypeError):
            self.metrics.count_shadow_batch("invalid")
            return
        self.metrics.count_shadow_batch("compared")
        agree, disagree = agreement(predictions, theirs, classifier, self.tolerance)
        self.metrics.count_shadow_rows(version, agree, disagree)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
