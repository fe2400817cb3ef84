"""Dataset loading: built-ins, CSV/Parquet from a path, file:// and http, and exit-3 failures."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from modelyard_training.config import DatasetSpec
from modelyard_training.datasets import load_dataset, split
from modelyard_training.errors import EXIT_DATASET, DatasetUnavailable
from modelyard_training.sources import redact_uri

from tests.helpers import free_port


def spec(**fields: Any) -> DatasetSpec:
    return DatasetSpec.model_validate(fields)


@pytest.fixture()
def table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=30), "b": rng.integers(0, 5, size=30), "c": rng.normal(size=30)})
    frame["label"] = (frame["a"] > 0).astype(int)
    return frame


@pytest.fixture()
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on loopback serving tmp_path (the dataset-over-http case)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("name", "rows", "features"), [("iris", 150, 4), ("wine", 178, 13), ("digits", 1797, 64)])
def test_builtins_have_named_float_features(name: str, rows: int, features: int) -> None:
    data = load_dataset(spec(builtin=name), "classification")
    assert (len(data.frame), len(data.features), data.target) == (rows, features, "target")
    assert all(dtype == np.float64 for dtype in data.x.dtypes)
    assert data.source == f"sklearn.datasets.load_{name}"
    if name == "iris":
        assert data.features[0] == "sepal length (cm)"
    if name == "digits":
        assert data.features[0] == "pixel_0_0"


def test_builtin_regression_dataset() -> None:
    data = load_dataset(spec(builtin="diabetes"), "regression")
    assert len(data.features) == 10


def test_csv_from_path_and_file_uri(tmp_path: Path, table: pd.DataFrame) -> None:
    path = tmp_path / "train.csv"
    table.to_csv(path, index=False)
    for uri in (str(path), path.as_uri()):
        data = load_dataset(spec(uri=uri, target="label"), "classification")
        assert data.features == ["a", "b", "c"] and data.name == "train"
        assert data.x["b"].dtype == np.float64  # integer columns are cast for a float64 signature


def test_parquet_with_forced_format_and_feature_selection(tmp_path: Path, table: pd.DataFrame) -> None:
    path = tmp_path / "export.bin"
    table.to_parquet(path)
    data = load_dataset(spec(uri=str(path), format="parquet", target="label", features=["c", "a"]), "classification")
    assert data.features == ["c", "a"]
    assert list(data.frame.columns) == ["c", "a", "label"]


def test_csv_over_http(http_root: tuple[str, Path], table: pd.DataFrame) -> None:
    base, root = http_root
    table.to_csv(root / "data.csv", index=False)
    data = load_dataset(spec(uri=f"{base}/data.csv?token=secret", target="label"), "classification")
    assert len(data.frame) == 30
    assert data.source == f"{base}/data.csv"  # the query string (a presigned token) is not recorded


@pytest.mark.parametrize(
    ("uri_of", "expected"),
    [
        (lambda base, tmp: f"{base}/missing.csv", "returned HTTP 404"),
        (lambda base, tmp: f"http://127.0.0.1:{free_port()}/x.csv", "cannot reach"),
        (lambda base, tmp: str(tmp / "nope.csv"), "does not exist (is its volume mounted?)"),
    ],
)
def test_unreachable_sources_are_dataset_unavailable(http_root: tuple[str, Path], uri_of: Any, expected: str) -> None:
    base, root = http_root
    with pytest.raises(DatasetUnavailable) as caught:
        load_dataset(spec(uri=uri_of(base, root), target="label"), "classification")
    assert caught.value.exit_code == EXIT_DATASET == 3
    assert caught.value.message.startswith("spec.dataset.uri:")
    assert expected in caught.value.message


def test_http_timeout_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection but never answers
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.csv"
        with pytest.raises(DatasetUnavailable, match=r"timed out|cannot reach"):
            load_dataset(spec(uri=uri, target="label"), "classification", timeout=0.5)


@pytest.mark.parametrize(
    ("mutate", "fields", "task", "expected"),
    [
        (lambda t: t, {"target": "y"}, "classification", "spec.dataset.target: column 'y' is not in the dataset"),
        (lambda t: t, {"target": "label", "features": ["a", "zz"]}, "classification", "not in the dataset: zz"),
        (lambda t: t, {"target": "label", "features": ["a", "label"]}, "classification", "includes the target"),
        (lambda t: t.assign(a=["x"] * 30), {"target": "label"}, "classification", "non-numeric columns"),
        (lambda t: t.assign(c=np.nan), {"target": "label"}, "classification", "missing values in: c"),
        (lambda t: t, {"target": "a"}, "classification", "is continuous, not class labels"),
        (lambda t: t.assign(label=0), {"target": "label"}, "classification", "single class"),
        (lambda t: t.assign(label="yes"), {"target": "label"}, "regression", "is not numeric"),
        (lambda t: t.head(3), {"target": "label"}, "classification", "at least 4 are needed"),
    ],
)
def test_unusable_tables_are_dataset_unavailable(
    tmp_path: Path, table: pd.DataFrame, mutate: Any, fields: dict[str, Any], task: Any, expected: str
) -> None:
    path = tmp_path / "t.csv"
    mutate(table).to_csv(path, index=False)
    with pytest.raises(DatasetUnavailable, match=expected.replace("(", r"\(")):
        load_dataset(spec(uri=str(path), **fields), task)


def test_garbage_file_cannot_be_parsed(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DatasetUnavailable, match="cannot parse"):
        load_dataset(spec(uri=str(path), target="label"), "classification")


def test_split_is_seeded_and_stratified() -> None:
    data = load_dataset(spec(builtin="iris"), "classification")
    first = split(data, 0.2, 42, "classification")
    again = split(data, 0.2, 42, "classification")
    assert first.x_train.index.equals(again.x_train.index)
    assert len(first.y_test) == 30
    assert sorted(np.unique(first.y_test, return_counts=True)[1]) == [10, 10, 10]


def test_redact_uri_drops_credentials_and_query() -> None:
    assert redact_uri("https://user:pw@host:8443/d/x.csv?sig=abc#frag") == "https://host:8443/d/x.csv"
    assert redact_uri("/data/x.csv") == "/data/x.csv"
