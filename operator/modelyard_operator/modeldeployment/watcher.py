"""Shared registry watcher: one MLflow query per distinct model per poll, then wake MDs.

How waking works, and why it is robust to restarts:
- Each ModelDeployment reconcile ends with ``track(key, ref, interval, observed)``, where
  ``observed`` is the token it acted on (the resolved version, or ``!Reason``).
- Every tick the watcher refreshes each distinct model that is due (at the smallest poll
  interval of the MDs using it), computes the token the registry implies for each MD and wakes
  only the MDs whose token differs. Webhook events call ``notify(model)``, the same path, now.
- Waking calls the same level-based reconcile as the kopf handlers (in memory; no API write).
  Nothing is lost in a crash: on restart kopf's resume handlers reconcile every MD, which
  re-registers it here, and a reconcile always compares the registry with what it serves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modelyard_operator import metrics
from modelyard_operator.modeldeployment.models import ModelRef
from modelyard_operator.modeldeployment.resolver import Resolver, observation

logger = logging.getLogger(__name__)

MDKey = tuple[str, str]
WakeFn = Callable[[MDKey], Awaitable[None]]
TICK_SECONDS = 1.0


@dataclass
class Watch:
    ref: ModelRef
    poll_interval: float
    observed: str

    @property
    def needs_polling(self) -> bool:
        # A pinned version never moves; poll it only to notice recovery from an error.
        return self.ref.version is None or self.observed.startswith("!")


class RegistryWatcher:
    def __init__(
        self, resolver: Resolver, wake: WakeFn, default_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._wake = wake
        self.default_interval = default_interval
        self._clock = clock
        # Written from reconcile threads, read on the event loop: guard every access.
        self._lock = threading.Lock()
        self._watches: dict[MDKey, Watch] = {}
        self._last_poll: dict[str, float] = {}
        self._in_flight: set[MDKey] = set()

    def track(self, key: MDKey, ref: ModelRef, poll_interval: float | None, observed: str) -> None:
        """Record what ``key`` last acted on (called at the end of each reconcile)."""
        with self._lock:
            self._watches[key] = Watch(ref, poll_interval or self.default_interval, observed)

    def untrack(self, key: MDKey) -> None:
        with self._lock:
            self._watches.pop(key, None)

    def _snapshot(self) -> dict[MDKey, Watch]:
        with self._lock:
            return dict(self._watches)

    def watched_models(self) -> dict[str, float]:
        """Distinct models that need polling, each with the shortest interval asked for."""
        intervals: dict[str, float] = {}
        for watch in self._snapshot().values():
            if watch.needs_polling:
                name = watch.ref.name
                intervals[name] = min(intervals.get(name, watch.poll_interval), watch.poll_interval)
        return intervals

    def due(self) -> list[str]:
        now = self._clock()
        return sorted(
            name for name, interval in self.watched_models().items()
            if now - self._last_poll.get(name, float("-inf")) >= interval
        )

    def affected(self, name: str) -> list[MDKey]:
        """MDs of ``name`` whose last observation differs from the cached registry state."""
        outcome = self._resolver.cached(name)
        if outcome is None:
            return []
        return sorted(
            key for key, watch in self._snapshot().items()
            if watch.ref.name == name and key not in self._in_flight
            and observation(outcome, watch.ref) != watch.observed
        )

    async def check(self, name: str) -> list[MDKey]:
        """Refresh one model (one MLflow request) and wake the MDs it moved."""
        self._last_poll[name] = self._clock()
        await asyncio.to_thread(self._resolver.refresh, name)
        keys = self.affected(name)
        if keys:
            logger.info("registry change for model %r wakes %s", name, keys)
            await asyncio.gather(*(self._wake_one(key) for key in keys))
        return keys

    async def _wake_one(self, key: MDKey) -> None:
        self._in_flight.add(key)
        try:
            await self._wake(key)
        except Exception:  # one MD's failure must not stop the watcher
            logger.exception("waking ModelDeployment %s/%s failed", *key)
        finally:
            self._in_flight.discard(key)

    async def notify(self, name: str) -> list[MDKey]:
        """Webhook path: the model changed in MLflow; check it now instead of at next poll."""
        if not any(w.ref.name == name for w in self._snapshot().values()):
            return []
        return await self.check(name)

    async def poll_once(self) -> None:
        names = self.due()
        if not names:
            return
        with metrics.REGISTRY_POLL_DURATION.time():
            await asyncio.gather(*(self.check(name) for name in names))

    async def run(self) -> None:
        """Poll forever (cancelled at operator shutdown)."""
        logger.info("registry watcher started (default interval %.0fs)", self.default_interval)
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("registry poll failed")
            await asyncio.sleep(TICK_SECONDS)
