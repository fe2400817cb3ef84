"""Shared, thread-safe cache in front of the registry.

Every ModelDeployment reconcile resolves its selector here. Snapshots (one per distinct model)
are refreshed by the registry watcher every poll interval and on webhook events, so a
reconcile normally costs no MLflow request at all, however many ModelDeployments exist.
Failures are cached briefly too, so an outage does not turn into a request storm.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from modelyard_operator.modeldeployment.models import ModelRef
from modelyard_operator.registry import (
    ModelSnapshot,
    Registry,
    RegistryError,
    ResolvedVersion,
)

# How long a failed lookup is remembered: short, so recovery is noticed within seconds.
ERROR_TTL = 5.0
# Version details never change once registered; bound the memory anyway.
MAX_VERSIONS = 4096


@dataclass(frozen=True)
class _Entry:
    snapshot: ModelSnapshot | None
    error: RegistryError | None
    fetched_at: float


class Resolver:
    """Cached selector resolution over a :class:`Registry`."""

    def __init__(
        self, registry: Registry, max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._model_locks: dict[str, threading.Lock] = {}
        self._snapshots: dict[str, _Entry] = {}
        self._versions: dict[tuple[str, str], ResolvedVersion] = {}
        self._version_errors: dict[tuple[str, str], _Entry] = {}
        self._tags: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    @property
    def registry(self) -> Registry:
        return self._registry

    def tags(self, name: str, version: str) -> dict[str, str]:
        """A version's tags, cached for ``max_age`` (they gate retrying a rejected version)."""
        key = (name, version)
        cached = self._tags.get(key)
        if cached is not None and self._clock() - cached[0] < self.max_age:
            return cached[1]
        tags = self._registry.version_tags(name, version)
        with self._lock:
            if len(self._tags) >= MAX_VERSIONS:
                self._tags.clear()
            self._tags[key] = (self._clock(), tags)
        return tags

    def forget_tags(self, name: str, version: str) -> None:
        """Drop cached tags after the operator itself changed them."""
        self._tags.pop((name, version), None)

    def _model_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._model_locks.setdefault(name, threading.Lock())

    def refresh(self, name: str) -> ModelSnapshot | RegistryError:
        """Fetch ``name`` now (one request) and store the outcome; never raises RegistryError."""
        with self._model_lock(name):
            return self._fetch(name)

    def _fetch(self, name: str) -> ModelSnapshot | RegistryError:
        try:
            snap = self._registry.snapshot(name)
        except RegistryError as error:
            self._snapshots[name] = _Entry(None, error, self._clock())
            return error
        self._snapshots[name] = _Entry(snap, None, self._clock())
        return snap

    def snapshot(self, name: str) -> ModelSnapshot:
        """A snapshot no older than ``max_age`` (errors: ERROR_TTL); fetches at most once.

        Concurrent callers for the same model wait on one fetch instead of each sending one.
        """
        with self._model_lock(name):
            entry = self._snapshots.get(name)
            fresh = entry is not None and self._fresh(entry)
            outcome = self.cached(name) if fresh else self._fetch(name)
        if isinstance(outcome, RegistryError):
            raise outcome
        if outcome is None:  # unreachable: a fresh entry always holds one of the two
            raise RuntimeError(f"empty registry cache entry for {name!r}")
        return outcome

    def cached(self, name: str) -> ModelSnapshot | RegistryError | None:
        """The last outcome for ``name`` without fetching (None when never fetched)."""
        entry = self._snapshots.get(name)
        if entry is None:
            return None
        return entry.snapshot if entry.snapshot is not None else entry.error

    def _fresh(self, entry: _Entry) -> bool:
        ttl = self.max_age if entry.error is None else ERROR_TTL
        return self._clock() - entry.fetched_at < ttl

    def version(self, name: str, version: str) -> ResolvedVersion:
        """Details of one version; concurrent callers share a single request."""
        key = (name, version)
        if key in self._versions:
            return self._versions[key]
        with self._model_lock(name):
            return self._version_locked(key)

    def _version_locked(self, key: tuple[str, str]) -> ResolvedVersion:
        name, version = key
        if key in self._versions:  # fetched by another thread while we waited
            return self._versions[key]
        failed = self._version_errors.get(key)
        if failed is not None and self._fresh(failed) and failed.error is not None:
            raise failed.error
        try:
            resolved = self._registry.version(name, version)
        except RegistryError as error:
            self._version_errors[key] = _Entry(None, error, self._clock())
            raise
        with self._lock:
            if len(self._versions) >= MAX_VERSIONS:
                self._versions.clear()
            self._versions[key] = resolved
            self._version_errors.pop(key, None)
        return resolved

    def resolve(self, ref: ModelRef) -> ResolvedVersion:
        """The version ``ref`` selects now; raises the typed RegistryError otherwise."""
        if ref.version is not None:
            return self.version(ref.name, ref.version)
        snap = self.snapshot(ref.name)
        number = snap.version_for(ref)
        if ref.stage is not None:
            # The snapshot already carries stage versions' details: no second request.
            details = snap.stages[ref.stage]
            self._versions.setdefault((ref.name, number), details)
            return details
        return self.version(ref.name, number)


def observation(snapshot: ModelSnapshot | RegistryError, ref: ModelRef) -> str:
    """What the registry says ``ref`` should be, as a comparable token.

    A version number, or ``!<Reason>`` when it cannot be resolved. The watcher compares this
    with the token each ModelDeployment's last reconcile saw to decide whom to wake.
    """
    if isinstance(snapshot, RegistryError):
        return f"!{snapshot.reason}"
    try:
        return snapshot.version_for(ref)
    except RegistryError as error:
        return f"!{error.reason}"
