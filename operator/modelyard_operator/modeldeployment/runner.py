"""Runs reconciles for ModelDeployments from every trigger, one at a time per object.

kopf handlers, the registry watcher, Deployment/TrainingRun events, the timer and the drift
loop all end up in ``MDRunner.run``. A per-object lock serialises them, so two triggers never
race on the same status, and every run starts from a fresh GET of the object.

Triggers that only say "look again" (watch events, registry wakes, the resync loop) coalesce:
when a run for the object is already waiting for its lock, that run will read everything
fresh once it gets the lock, so another one queued behind it would only repeat it. A rollout
sends several Deployment events per object; without this each became a full reconcile, and at
scale they crowded out the reconciles an alias move is waiting for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from modelyard_operator import API_VERSION, kube, metrics
from modelyard_operator.conditions import set_condition, status_changed
from modelyard_operator.events import Event, Outcome, post
from modelyard_operator.modeldeployment.models import MD_KIND, MD_PLURAL, InvalidSpec, ModelDeployment, parse_md
from modelyard_operator.modeldeployment.reconcile import reconcile
from modelyard_operator.modeldeployment.resolver import Resolver
from modelyard_operator.modeldeployment.status import READY
from modelyard_operator.modeldeployment.watcher import MDKey, RegistryWatcher
from modelyard_operator.policy import Policy, describe, modeldeployment_violations
from modelyard_operator.settings import Settings

logger = logging.getLogger(__name__)

# A steady MD is fully re-reconciled by the timer at most this often; unsteady ones each tick.
STEADY_RESYNC_SECONDS = 60.0


class MDRunner:
    def __init__(self, settings: Settings, resolver: Resolver) -> None:
        self.settings = settings
        self.resolver = resolver
        self.watcher: RegistryWatcher | None = None
        self._locks: dict[MDKey, threading.Lock] = {}
        self._guard = threading.Lock()
        self._waiting: dict[MDKey, int] = {}
        self._last_run: dict[MDKey, float] = {}
        # Only whether the last status was steady: a thousand whole status copies were
        # long-lived objects born amid each reconcile's parsed responses, pinning memory.
        self._steady: dict[MDKey, bool] = {}
        self._deployment_version: dict[MDKey, str | None] = {}
        self.retrain_keys: set[MDKey] = set()

    def lock(self, key: MDKey) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def fetch(self, key: MDKey) -> ModelDeployment | None:
        body = kube.get(API_VERSION, MD_KIND, key[0], key[1])
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            self.forget(key)
            return None
        md = parse_md(body)
        # Refused for clusters without the chart's admission policy. Children already running
        # are left alone (like any invalid spec), so a stricter policy never takes a model down.
        violations = modeldeployment_violations(body.get("spec") or {},
                                                Policy.from_settings(self.settings))
        if violations:
            raise InvalidSpec(describe(violations), reason="PolicyViolation")
        return md

    def forget(self, key: MDKey) -> None:
        if self.watcher is not None:
            self.watcher.untrack(key)
        self.retrain_keys.discard(key)
        self._last_run.pop(key, None)
        metrics.MODELDEPLOYMENTS_TRACKED.set(len(self._last_run))
        self._steady.pop(key, None)
        self._deployment_version.pop(key, None)

    def reconciled(self, key: MDKey) -> bool:
        """Whether a run of ``key`` finished in this process (and it was not deleted since)."""
        return key in self._last_run

    def known(self) -> list[MDKey]:
        """Every MD reconciled at least once and not deleted since."""
        return sorted(self._last_run)

    def run(self, key: MDKey, coalesce: bool = False, unless_seen: str | None = None,
            ) -> Outcome | None:
        """Reconcile ``key`` now; raises InvalidSpec or lets API errors through.

        ``coalesce``: return None at once when another run for ``key`` is already waiting.
        ``unless_seen``: a serving Deployment's resourceVersion; return None when the last
        run read that version, checked again once the lock is ours (after a restart the
        listing's events arrive while the resume runs are still reading the same versions).
        """
        with self._guard:
            if coalesce and self._waiting.get(key):
                metrics.RECONCILES.labels(kind=MD_KIND, result="coalesced").inc()
                return None
            self._waiting[key] = self._waiting.get(key, 0) + 1
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                self._waiting[key] -= 1
                if not self._waiting[key]:
                    del self._waiting[key]
            if self.saw_deployment(key, unless_seen):
                metrics.RECONCILES.labels(kind=MD_KIND, result="seen").inc()
                return None
            return self._run_locked(key)

    def run_with(self, key: MDKey, before: Callable[[ModelDeployment], bool]) -> Outcome | None:
        """Run ``before(md)`` (e.g. a retrain check) and, if it changed something, reconcile.

        One lock hold for both, so no other trigger sees the half-done state in between.
        """
        with self.lock(key):
            md = self._fetch_valid(key)
            if md is None or not before(md):
                return None
            return self._run_locked(key)

    def _fetch_valid(self, key: MDKey) -> ModelDeployment | None:
        try:
            return self.fetch(key)
        except InvalidSpec:
            return None

    def _run_locked(self, key: MDKey) -> Outcome | None:
        started = time.perf_counter()
        result = "error"
        try:
            try:
                md = self.fetch(key)
            except InvalidSpec as error:
                self._mark_invalid(key, error)
                result = "invalid"
                raise
            if md is None:
                metrics.export_md_conditions(key[0], key[1], [])  # deleted: drop its series
                result = "ok"
                return None
            outcome = reconcile(md, self.settings, self.resolver)
            self._publish(md, outcome)
            result = "waiting" if outcome.registry_error else "ok"
            return outcome
        finally:
            metrics.RECONCILES.labels(kind=MD_KIND, result=result).inc()
            metrics.RECONCILE_DURATION.labels(kind=MD_KIND).observe(time.perf_counter() - started)

    def _publish(self, md: ModelDeployment, outcome: Outcome) -> None:
        if status_changed(md.status, outcome.status):
            kube.patch_status(API_VERSION, MD_PLURAL, md.namespace, md.name, outcome.status)
        metrics.export_md_conditions(md.namespace, md.name, outcome.status.get("conditions") or [])
        self.post_events(md, outcome.events)
        if outcome.promotion is not None:
            metrics.PROMOTIONS.labels(
                model=md.spec.model.name, from_version=outcome.promotion[0],
                to_version=outcome.promotion[1],
            ).inc()
        if self.watcher is not None:
            self.watcher.track(md.key, md.spec.model, md.spec.registry.poll_interval,
                               outcome.observed)
        if md.spec.retrain is not None:
            self.retrain_keys.add(md.key)
        else:
            self.retrain_keys.discard(md.key)
        self._last_run[md.key] = time.monotonic()
        metrics.MODELDEPLOYMENTS_TRACKED.set(len(self._last_run))
        self._steady[md.key] = steady(outcome.status)
        self._deployment_version[md.key] = outcome.deployment_version

    def post_events(self, md: ModelDeployment, events: list[Event]) -> None:
        post(md.body, events)

    def _mark_invalid(self, key: MDKey, error: InvalidSpec) -> None:
        """Ready=False with the reason, and a Warning Event when that is news."""
        body = kube.get(API_VERSION, MD_KIND, key[0], key[1]) or {}
        status: dict[str, Any] = dict(body.get("status") or {})
        generation = (body.get("metadata") or {}).get("generation")
        conditions = set_condition(status.get("conditions"), READY, "False", error.reason,
                                   str(error), generation)
        new = {"observedGeneration": generation, "conditions": conditions}
        if status_changed(status, new):
            kube.patch_status(API_VERSION, MD_PLURAL, key[0], key[1], new)
            if body:
                post(body, [Event("Warning", error.reason, str(error))])

    def saw_deployment(self, key: MDKey, resource_version: str | None) -> bool:
        """Whether the last finished run of ``key`` already read (or wrote) this version of its
        serving Deployment: an event for it then tells nothing new (our own write's echo, or
        the initial listing after a restart)."""
        return resource_version is not None and self._deployment_version.get(key) == resource_version

    def due_for_resync(self, key: MDKey) -> bool:
        """Resync gate: every tick while unsteady, else once per STEADY_RESYNC_SECONDS."""
        last = self._last_run.get(key)
        return (not self._steady.get(key) or last is None
                or time.monotonic() - last >= STEADY_RESYNC_SECONDS)


def steady(status: dict[str, Any]) -> bool:
    """Ready, not progressing, not degraded: nothing to watch closely."""
    return all(
        any(c.get("type") == t and c.get("status") == s for c in status.get("conditions") or [])
        for t, s in (("Ready", "True"), ("Progressing", "False"), ("Degraded", "False"))
    )
