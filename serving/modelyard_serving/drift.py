"""Input drift: per-feature PSI of a sliding window of recent rows against the training profile.

Memory is bounded by ``capacity`` whatever the traffic: the window is a ring buffer holding,
for each of the last ``capacity`` rows, the *bin index* of every feature (not the raw values),
and a flat array keeps how many window rows fall in each (feature, bin). Adding rows is integer
work proportional to rows x features; evicting the oldest row undoes its counts. PSI is then
computed from the counts only when someone asks (``GET /drift`` or a Prometheus scrape), so the
predict path never pays for it.

Bins follow docs/contracts.md: bin ``i`` holds ``cuts[i-1] < x <= cuts[i]``, i.e.
``numpy.searchsorted(cuts, x, side="left")``, which equals "how many cuts are < x".
"""

from __future__ import annotations

import json
import math
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

# Bins with no observations would make ln(a/e) infinite; both fractions are floored at EPSILON.
# 1e-4 is the usual choice: one empty bin then adds at most ~0.1 x its expected share.
EPSILON = 1e-4

FloatArray = npt.NDArray[np.float64]


class ProfileError(ValueError):
    """The model's stored reference profile is unusable (drift then reports unavailable)."""


@dataclass(frozen=True)
class FeatureReference:
    name: str
    cuts: tuple[float, ...]
    expected: tuple[float, ...]


def parse_profile(raw: Any, feature_names: list[str] | None) -> list[FeatureReference]:
    """Validate ``metadata["modelyard_profile"]`` and order its features like the model input."""
    if isinstance(raw, str):
        raw = json.loads(raw)
    if not isinstance(raw, dict) or raw.get("version") != 1:
        raise ProfileError("profile must be an object with version 1")
    items = raw.get("features")
    if not isinstance(items, list) or not items:
        raise ProfileError("profile has no features")
    refs = [_parse_feature(i, item) for i, item in enumerate(items)]
    if feature_names is None:
        return refs
    by_name = {ref.name: ref for ref in refs}
    missing = [name for name in feature_names if name not in by_name]
    if missing:
        raise ProfileError(f"profile lacks model features {missing}")
    return [by_name[name] for name in feature_names]


def _parse_feature(index: int, item: Any) -> FeatureReference:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ProfileError(f"profile feature {index} has no name")
    name = item["name"]
    try:
        cuts = tuple(float(c) for c in item["cuts"])
        expected = tuple(float(e) for e in item["expected"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"feature {name!r}: cuts/expected must be number lists") from exc
    if any(not math.isfinite(c) for c in cuts) or any(b <= a for a, b in pairwise(cuts)):
        raise ProfileError(f"feature {name!r}: cuts must be finite and strictly increasing")
    if len(expected) != len(cuts) + 1:
        raise ProfileError(f"feature {name!r}: expected needs len(cuts)+1 fractions")
    total = sum(expected)
    if any(e < 0 or not math.isfinite(e) for e in expected) or abs(total - 1.0) > 1e-3:
        raise ProfileError(f"feature {name!r}: expected must be fractions summing to 1")
    return FeatureReference(name, cuts, tuple(e / total for e in expected))


def psi(actual: FloatArray, expected: FloatArray) -> FloatArray:
    """Population stability index along the last axis, with EPSILON smoothing."""
    a = np.maximum(actual, EPSILON)
    e = np.maximum(expected, EPSILON)
    return np.asarray(((a - e) * np.log(a / e)).sum(axis=-1), dtype=np.float64)


@dataclass(frozen=True)
class DriftSnapshot:
    window_size: int
    capacity: int
    features: dict[str, float]
    score: float


class DriftTracker:
    """Sliding-window bin counts for every feature. Not thread-safe: the server only touches it
    from the event loop thread."""

    def __init__(self, features: list[FeatureReference], capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.names = [f.name for f in features]
        n_features = self._n_features = len(features)
        n_bins = self._n_bins = max(len(f.cuts) for f in features) + 1
        self._cut_lists = [list(f.cuts) for f in features]
        self._last_bins = [len(f.cuts) for f in features]
        # Flat count index of (feature f, bin b) is f * n_bins + b.
        self._offsets = [f * n_bins for f in range(n_features)]
        # Cuts padded with +inf so one broadcast comparison bins a whole batch; a finite x is
        # never > inf, so the padding never adds to a feature's bin index.
        self._cuts = np.full((n_features, max(n_bins - 1, 1)), np.inf)
        self._expected = np.zeros((n_features, n_bins))
        for i, f in enumerate(features):
            self._cuts[i, : len(f.cuts)] = f.cuts
            self._expected[i, : len(f.expected)] = f.expected
        # Bins a feature does not have are zero on both sides; masking keeps them out of PSI.
        self._mask = np.arange(n_bins)[None, :] <= np.array(self._last_bins)[:, None]
        # The ring is an int32 array.array (4 bytes per feature per row) so single rows are
        # updated with plain Python indexing, ~10x cheaper than numpy scalar access; batches
        # use a numpy view of the same memory. Counts are a Python list for the same reason.
        self._ring = array("i", bytes(4 * capacity * n_features))
        self._ring_view = np.frombuffer(self._ring, dtype=np.int32).reshape(capacity, n_features)
        self._counts = [0] * (n_features * n_bins)
        self._pos = 0
        self._size = 0

    @property
    def window_size(self) -> int:
        return self._size

    def observe(self, rows: FloatArray) -> None:
        """Add validated rows (shape [n, features]) to the window, evicting the oldest."""
        n = rows.shape[0]
        if n == 1:
            self._push_one(rows[0].tolist())
        elif n > 1:
            self._push_many(rows)

    def _push_one(self, row: list[float]) -> None:
        n_features, ring, counts = self._n_features, self._ring, self._counts
        base = self._pos * n_features
        full = self._size == self.capacity
        for f in range(n_features):
            x = row[f]
            # x != x is NaN, which numpy.searchsorted sorts after every cut.
            b = self._last_bins[f] if x != x else bisect_left(self._cut_lists[f], x)
            b += self._offsets[f]
            if full:
                counts[ring[base + f]] -= 1
            ring[base + f] = b
            counts[b] += 1
        if not full:
            self._size += 1
        self._pos = (self._pos + 1) % self.capacity

    def _push_many(self, rows: FloatArray) -> None:
        bins = (rows[:, :, None] > self._cuts[None, :, :]).sum(axis=2, dtype=np.int64)
        nan = np.isnan(rows)
        if nan.any():
            bins = np.where(nan, np.array(self._last_bins)[None, :], bins)
        flat = (bins + np.array(self._offsets)).astype(np.int32)
        n_counts = len(self._counts)
        if flat.shape[0] >= self.capacity:
            kept = flat[-self.capacity :]
            self._ring_view[:] = kept
            self._counts = np.bincount(kept.ravel(), minlength=n_counts).tolist()
            self._pos, self._size = 0, self.capacity
            return
        slots = (self._pos + np.arange(flat.shape[0])) % self.capacity
        # Until the ring is full it fills 0..size-1 in order, so occupied slots are < size.
        occupied = slots if self._size == self.capacity else slots[slots < self._size]
        delta = np.bincount(flat.ravel(), minlength=n_counts)
        if occupied.size:
            delta -= np.bincount(self._ring_view[occupied].ravel(), minlength=n_counts)
        self._counts = (np.asarray(self._counts) + delta).tolist()
        self._ring_view[slots] = flat
        self._size = min(self.capacity, self._size + flat.shape[0])
        self._pos = int((self._pos + flat.shape[0]) % self.capacity)

    def snapshot(self) -> DriftSnapshot:
        """PSI per feature and their mean as the summary score.

        The mean (not the max) is the score so one noisy feature among many does not trigger
        a retrain on its own; per-feature values stay available for alerting on a single one.
        An empty window reports 0 everywhere rather than the PSI of nothing.
        """
        if self._size == 0:
            zeros = dict.fromkeys(self.names, 0.0)
            return DriftSnapshot(0, self.capacity, zeros, 0.0)
        actual = np.asarray(self._counts).reshape(len(self.names), self._n_bins) / self._size
        per_feature = psi(np.where(self._mask, actual, 0.0), np.where(self._mask, self._expected, EPSILON))
        values = {name: float(v) for name, v in zip(self.names, per_feature, strict=True)}
        return DriftSnapshot(self._size, self.capacity, values, float(per_feature.mean()))
