"""Paying for the heavy imports once: the collector paused, scikit-learn before MLflow.

A start imports ~2,000 modules (FastAPI, NumPy, SciPy, scikit-learn, MLflow, skops): most of
its CPU time, and nearly all of it is code the native sklearn path needs. Two things make it
cheaper without importing less (the training image does the same in ``_import_training``;
docs/benchmarks.md, "Training run" and "Cold start", has the measurements):

- The collector is paused while importing: imports make ~10^5 long-lived container objects
  and next to no garbage, yet trigger full collections of all of them. Freezing them afterwards
  keeps every later collection (the one before serving, and those requests trigger) from
  scanning them again.
- scikit-learn (so SciPy) is imported before MLflow: skops, the model format, names each of
  ~900 SciPy ufuncs at import by scanning ``sys.modules`` in insertion order until
  ``scipy.special``; every module imported before SciPy lengthens that scan.
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


def import_model_libraries() -> None:
    """scikit-learn, then the MLflow client: what every load needs."""
    with frozen_imports():
        for name in MODEL_LIBRARIES:
            importlib.import_module(name)
