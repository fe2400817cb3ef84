"""Paying for the heavy imports once: the collector paused, SciPy imported early.

A start imports ~2,000 modules (FastAPI, NumPy, SciPy, scikit-learn, MLflow, skops): most of
its CPU time, and nearly all of it is code the native sklearn path needs. Two things make it
cheaper without importing less (the training image does the same in ``_import_training``;
docs/benchmarks.md, "Training run" and "Cold start", has the measurements):

- The collector is paused while importing: imports make ~10^5 long-lived container objects
  and next to no garbage, yet trigger full collections of all of them. Freezing them afterwards
  keeps every later collection (the one before serving, and those requests trigger) from
  scanning them again.
- ``scipy.special`` is imported early: skops, the model format, names each of ~230 SciPy ufuncs
  at import by scanning ``sys.modules`` in insertion order until ``scipy.special``, so every
  module imported before it lengthens that scan. The entrypoint imports it before FastAPI
  (~430 modules ahead of it instead of ~890: ``import skops.io`` 0.8-1.1 -> 0.4-0.5 CPU s); a
  load imports scikit-learn, which imports SciPy, before MLflow.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from contextlib import contextmanager

# In this order (see above); ``skops.io`` follows for ``.skops`` models only.
MODEL_LIBRARIES = ("sklearn.base", "mlflow.artifacts")


@contextmanager
def frozen_imports() -> Iterator[None]:
    """Import with the collector paused; freeze what is alive afterwards (on failure too: what
    an aborted import left behind is as long-lived). An already paused collector stays paused."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def import_scipy_special() -> None:
    """What the entrypoint imports first. Not extra work: scikit-learn imports it anyway, so
    this only moves ~0.35 CPU s from after /healthz answers to before."""
    with frozen_imports():
        import scipy.special  # noqa: F401


def import_model_libraries() -> None:
    """scikit-learn, then the MLflow client: what every load needs."""
    with frozen_imports():
        for name in MODEL_LIBRARIES:
            importlib.import_module(name)
