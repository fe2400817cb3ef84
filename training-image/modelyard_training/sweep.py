"""Deterministic sweep trial parameters and best-trial choice.

A trial pod knows only its Job completion index, so its parameters must be a pure function of
(spec, index): any pod, retried or not, computes the same point, and `select` never needs to
know how the points were chosen, only which run scored best.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import Objective, ParamSpace, SweepSpec

# A min/max range under the grid strategy becomes this many evenly spaced points (log-spaced
# when `log` is set); int ranges narrower than that use every integer.
GRID_POINTS_PER_RANGE = 5


def trial_params(sweep: SweepSpec, index: int, seed: int) -> dict[str, Any]:
    """The hyperparameters of trial `index`: grid takes the index-th point of the cartesian
    product (wrapping), random draws from a generator seeded with `seed + index`."""
    if index < 0:
        raise ValueError(f"trial index must be >= 0, got {index}")
    # Sorted names: the API server may hand the space back in any key order.
    names = sorted(sweep.space)
    if sweep.strategy == "grid":
        return _grid_point([(name, grid_axis(sweep.space[name])) for name in names], index)
    rng = random.Random(seed + index)
    return {name: _draw(sweep.space[name], rng) for name in names}


def grid_size(sweep: SweepSpec) -> int:
    return math.prod(len(grid_axis(dim)) for dim in sweep.space.values())


def grid_axis(dim: ParamSpace) -> list[Any]:
    if dim.values is not None:
        return list(dim.values)
    assert dim.min is not None and dim.max is not None
    if dim.type == "int":
        low, high = math.ceil(dim.min), math.floor(dim.max)
        if high - low + 1 <= GRID_POINTS_PER_RANGE:
            return list(range(low, high + 1))
        points = _spaced(low, high, dim.log)
        return sorted({round(float(p)) for p in points})
    return [float(p) for p in _spaced(dim.min, dim.max, dim.log)] if dim.min != dim.max else [float(dim.min)]


def _spaced(low: float, high: float, log: bool) -> np.ndarray:
    if log:
        return np.geomspace(low, high, GRID_POINTS_PER_RANGE)
    return np.linspace(low, high, GRID_POINTS_PER_RANGE)


def _grid_point(axes: list[tuple[str, list[Any]]], index: int) -> dict[str, Any]:
    total = math.prod(len(values) for _, values in axes)
    remainder = index % total
    point: dict[str, Any] = {}
    # Mixed radix with the last name varying fastest, the same order as itertools.product.
    for name, values in reversed(axes):
        remainder, digit = divmod(remainder, len(values))
        point[name] = values[digit]
    return {name: point[name] for name, _ in axes}


def _draw(dim: ParamSpace, rng: random.Random) -> Any:
    if dim.values is not None:
        return rng.choice(dim.values)
    assert dim.min is not None and dim.max is not None
    low, high = (math.log(dim.min), math.log(dim.max)) if dim.log else (dim.min, dim.max)
    value = rng.uniform(low, high)
    if dim.log:
        value = math.exp(value)
    if dim.type == "int":
        return min(max(round(value), math.ceil(dim.min)), math.floor(dim.max))
    return value


@dataclass(frozen=True)
class TrialOutcome:
    trial: int
    run_id: str
    metrics: dict[str, float]
    # The trial's logged model, from the search that found the trial: `select` registers it
    # without reading the run again.
    model_uri: str


def pick_best(trials: Sequence[TrialOutcome], objective: Objective) -> TrialOutcome | None:
    """The best trial by the objective; ties go to the lowest index so reruns agree.
    Trials that did not log the objective metric (e.g. roc_auc undefined) cannot win."""
    scored = [t for t in trials if objective.metric in t.metrics and not math.isnan(t.metrics[objective.metric])]
    if not scored:
        return None
    sign = -1.0 if objective.maximize else 1.0
    return min(scored, key=lambda t: (sign * t.metrics[objective.metric], t.trial))
