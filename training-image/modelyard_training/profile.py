"""The reference profile serving compares live traffic against to score drift.

Shape and binning rule are fixed by docs/contracts.md: per feature, the k-1 inner quantile cut
points of the training split (deduplicated) and the fraction of training rows in each of the
len(cuts)+1 bins, where bin i holds `cuts[i-1] < x <= cuts[i]`
(`numpy.searchsorted(cuts, x, side="left")`). Serving bins live values with that same call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

PROFILE_VERSION = 1
DEFAULT_BINS = 10


def build_profile(x_train: pd.DataFrame, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    if bins < 2:
        raise ValueError("a profile needs at least 2 bins")
    inner = np.arange(1, bins) / bins
    features = []
    for name in x_train.columns:
        values = x_train[name].to_numpy(dtype=np.float64)
        # Discrete features repeat quantiles (digits pixels are mostly 0); duplicate cuts would
        # make empty bins that can never match, so they are dropped.
        cuts = [float(c) for c in np.unique(np.quantile(values, inner))]
        expected = [float(f) for f in bin_fractions(cuts, values)]
        features.append({"name": str(name), "cuts": cuts, "expected": expected})
    return {"version": PROFILE_VERSION, "sampleCount": len(x_train), "bins": bins, "features": features}


def bin_fractions(cuts: list[float], values: np.ndarray) -> np.ndarray:
    """Fractions of `values` per bin under the contract's rule (what serving computes live)."""
    counts = np.bincount(np.searchsorted(np.asarray(cuts), values, side="left"), minlength=len(cuts) + 1)
    return counts / max(len(values), 1)
