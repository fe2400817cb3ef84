"""MLflow webhook receiver: ``POST /webhooks/mlflow`` wakes the registry watcher at once.

Signature scheme, as MLflow (>= 3.3) delivers it (mlflow/webhooks/delivery.py,
``_generate_hmac_signature``): headers ``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` (unix
seconds) and ``X-MLflow-Signature: v1,<base64(HMAC-SHA256(secret,
"{delivery_id}.{timestamp}.{body}"))>``, where body is the exact JSON text sent. Binding the
delivery id and timestamp into the MAC, plus a freshness window, stops replays of old events.

The payload is only a hint: it names the model to re-check, and the watcher then reads the
registry itself. So even a forged event could at most cause one extra registry read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from modelyard_operator import metrics
from modelyard_operator.modeldeployment.watcher import RegistryWatcher

logger = logging.getLogger(__name__)

PATH = "/webhooks/mlflow"
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
MAX_AGE_SECONDS = 300
MAX_BODY_BYTES = 64 * 1024
# Bounds the replay memory; a burst beyond it can only forget the oldest ids, which a replay
# of would still have to be fresh and correctly signed.
MAX_REMEMBERED_DELIVERIES = 10_000
HANDLED_EVENTS = frozenset({
    "model_version.created",
    "model_version_alias.created",
    "model_version_alias.deleted",
})


@dataclass(frozen=True)
class Verification:
    ok: bool
    reason: str


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow would send for this delivery."""
    content = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None,
    max_age: float = MAX_AGE_SECONDS,
) -> Verification:
    """Check signature and freshness of one delivery (pure).

    Pass aiohttp's case-insensitive headers as they are: proxies may lower-case names.
    """
    signature = headers.get(SIGNATURE_HEADER)
    delivery_id = headers.get(DELIVERY_ID_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    if not signature or not delivery_id or not timestamp:
        return Verification(False, "missing signature, timestamp or delivery id header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        return Verification(False, "malformed timestamp")
    current = time.time() if now is None else now
    if abs(current - sent_at) > max_age:
        return Verification(False, "timestamp outside the accepted window")
    expected = sign(secret, delivery_id, timestamp, body)
    # Space-separated list: lets a sender present old and new signatures during rotation.
    if any(hmac.compare_digest(expected, given) for given in signature.split()):
        return Verification(True, "ok")
    return Verification(False, "signature mismatch")


def parse_event(body: bytes) -> tuple[str, str | None]:
    """(``entity.action``, model name) from a delivery body; ("invalid", None) if unreadable."""
    try:
        payload: Any = json.loads(body)
        event = f"{payload['entity']}.{payload['action']}"
        data = payload.get("data") or {}
        name = data.get("name")
        return event, str(name) if name else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return "invalid", None


class ReplayGuard:
    """Delivery ids seen within the freshness window. A signed delivery outside the window is
    refused by ``verify``, so remembering ids for that long is enough to refuse any replay."""

    def __init__(self, window: float = MAX_AGE_SECONDS, clock: Callable[[], float] = time.monotonic,
                 limit: int = MAX_REMEMBERED_DELIVERIES) -> None:
        self._window = window
        self._clock = clock
        self._limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen_before(self, delivery_id: str) -> bool:
        """True when ``delivery_id`` came within the window; records it otherwise."""
        now = self._clock()
        while self._seen and (now - next(iter(self._seen.values())) > self._window
                              or len(self._seen) >= self._limit):
            self._seen.popitem(last=False)
        if delivery_id in self._seen:
            return True
        self._seen[delivery_id] = now
        return False


class WebhookReceiver:
    """aiohttp app owning the receiver; ``start``/``stop`` from kopf startup/cleanup."""

    def __init__(self, watcher: RegistryWatcher, secret: str | None,
                 replays: ReplayGuard | None = None) -> None:
        self._watcher = watcher
        self._secret = secret
        self._replays = replays or ReplayGuard()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_post(PATH, self.handle)
        self.app.router.add_get("/healthz", self._healthz)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self._secret is not None:
            result = verify(self._secret, request.headers, body)
            if not result.ok:
                # The event label of an unverified body is attacker-controlled: don't trust it.
                metrics.WEBHOOK_EVENTS.labels(event="unverified", verified="false").inc()
                logger.warning("rejected MLflow webhook from %s: %s", request.remote, result.reason)
                return web.json_response({"error": result.reason}, status=401)
        verified = "true" if self._secret is not None else "unsigned"
        delivery_id = request.headers.get(DELIVERY_ID_HEADER)
        if delivery_id and self._replays.seen_before(delivery_id):
            # 200, not an error: a sender retrying a delivery we already took must stop.
            metrics.WEBHOOK_EVENTS.labels(event="duplicate", verified=verified).inc()
            logger.info("ignored MLflow webhook delivery %s seen before", delivery_id)
            return web.json_response({"accepted": False, "duplicate": True})
        event, model = parse_event(body)
        label = event if event in HANDLED_EVENTS else "other"
        metrics.WEBHOOK_EVENTS.labels(event=label, verified=verified).inc()
        if event in HANDLED_EVENTS and model:
            # Answer first, work after: MLflow waits on (and may retry) slow receivers.
            task = asyncio.create_task(self._watcher.notify(model))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({"accepted": True, "event": event, "model": model})

    async def start(self, port: int, host: str = "0.0.0.0") -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        logger.info("MLflow webhook receiver on %s:%d%s (signed: %s)",
                    host, port, PATH, self._secret is not None)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
