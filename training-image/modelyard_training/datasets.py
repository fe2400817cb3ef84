"""Load the training data: a scikit-learn built-in, or CSV/Parquet over http(s), from a volume,
from S3 or through DVC (fetching is in sources.py).

Every failure here is DatasetUnavailable (exit 3): a missing file, an unreachable URL or a table
that cannot train this model will not get better on retry.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import type_of_target

from .catalog import Task
from .config import DatasetSpec
from .errors import DatasetUnavailable
from .sources import Fetched, fetch_dvc, fetch_uri

BUILTIN_TARGET = "target"
HTTP_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class LoadedDataset:
    """Features (float64, in the chosen order) plus the target column, with provenance."""

    frame: pd.DataFrame
    features: list[str]
    target: str
    source: str
    name: str
    # Where exactly the rows came from (md5, DVC commit), logged with the dataset to MLflow.
    lineage: dict[str, str] = field(default_factory=dict)

    @property
    def x(self) -> pd.DataFrame:
        return self.frame[self.features]

    @property
    def y(self) -> pd.Series:
        return self.frame[self.target]


@dataclass(frozen=True)
class Split:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray


def load_dataset(spec: DatasetSpec, task: Task, *, timeout: float = HTTP_TIMEOUT_SECONDS) -> LoadedDataset:
    if spec.builtin is not None:
        raw = getattr(sk_datasets, f"load_{spec.builtin}")(as_frame=True).frame
        return _prepare(raw, spec, task, BUILTIN_TARGET, f"sklearn.datasets.load_{spec.builtin}", spec.builtin)
    assert spec.target is not None  # config validation requires it with uri and dvc
    fetched: Fetched
    if spec.dvc is not None:
        fetched = fetch_dvc(spec.dvc, spec.endpoint)
    else:
        assert spec.uri is not None  # exactly one source: config validation
        fetched = fetch_uri(spec.uri, timeout, spec.endpoint)
    raw = _parse(fetched.data, spec.file_format or "csv", fetched.source)
    return _prepare(raw, spec, task, spec.target, fetched.source, fetched.name, fetched.lineage)


def split(dataset: LoadedDataset, test_size: float, seed: int, task: Task) -> Split:
    y = dataset.y.to_numpy()
    stratify = None
    if task == "classification":
        # Stratify so small classes reach both splits, but only when every class can be split.
        _, counts = np.unique(y, return_counts=True)
        stratify = y if counts.min() >= 2 else None
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            dataset.x, y, test_size=test_size, random_state=seed, stratify=stratify
        )
    except ValueError as exc:
        raise DatasetUnavailable(f"cannot split {len(y)} rows with testSize={test_size}: {exc}") from exc
    return Split(x_train, x_test, np.asarray(y_train), np.asarray(y_test))


def _parse(data: bytes, file_format: str, shown: str) -> pd.DataFrame:
    try:
        if file_format == "parquet":
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data))
    except Exception as exc:  # pandas/pyarrow raise many unrelated types for a malformed file
        raise DatasetUnavailable(f"spec.dataset: cannot parse {shown} as {file_format}: {exc}") from exc


def _prepare(raw: pd.DataFrame, spec: DatasetSpec, task: Task, target: str, source: str, name: str,
             lineage: dict[str, str] | None = None) -> LoadedDataset:
    columns = [str(c) for c in raw.columns]
    raw.columns = pd.Index(columns)
    if target not in columns:
        raise DatasetUnavailable(
            f"spec.dataset.target: column '{target}' is not in the dataset (columns: {_listed(columns)})"
        )
    features = list(spec.features) if spec.features else [c for c in columns if c != target]
    missing = [c for c in features if c not in columns]
    if missing:
        raise DatasetUnavailable(f"spec.dataset.features: not in the dataset: {_listed(missing)}")
    if target in features:
        raise DatasetUnavailable(f"spec.dataset.features: includes the target column '{target}'")
    if not features:
        raise DatasetUnavailable("spec.dataset.features: the dataset has no feature columns besides the target")
    non_numeric = [c for c in features if not (is_numeric_dtype(raw[c]) or is_bool_dtype(raw[c]))]
    if non_numeric:
        raise DatasetUnavailable(
            f"spec.dataset.features: non-numeric columns (encode them first): {_listed(non_numeric)}"
        )
    frame = raw[features].astype("float64")
    frame[target] = raw[target]
    with_nan = [c for c in [*features, target] if frame[c].isna().any()]
    if with_nan:
        raise DatasetUnavailable(f"dataset has missing values in: {_listed(with_nan)}")
    if len(frame) < 4:
        raise DatasetUnavailable(f"dataset has {len(frame)} rows; at least 4 are needed to train and test")
    _check_target(frame[target], target, task)
    return LoadedDataset(frame=frame, features=features, target=target, source=source, name=name,
                         lineage=dict(lineage or {}))


def _check_target(y: pd.Series, target: str, task: Task) -> None:
    if task == "regression":
        if not is_numeric_dtype(y) or is_bool_dtype(y):
            raise DatasetUnavailable(
                f"spec.dataset.target: column '{target}' is not numeric; a regressor needs a number"
            )
        return
    kind = type_of_target(y.to_numpy())
    if kind not in ("binary", "multiclass"):
        raise DatasetUnavailable(
            f"spec.dataset.target: column '{target}' is {kind}, not class labels; "
            "use a regressor for continuous targets"
        )
    if y.nunique() < 2:
        raise DatasetUnavailable(f"spec.dataset.target: column '{target}' has a single class")


def _listed(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, … ({len(names)} in all)"
