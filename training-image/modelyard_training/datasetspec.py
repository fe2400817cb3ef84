"""The dataset part of the training config (``spec.dataset``): where the rows come from, and
the rules that span its fields. config.py builds the whole spec from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .catalog import BUILTIN_TASKS, BuiltinDataset, Task


class SpecBase(BaseModel):
    """Every spec model: camelCase names as the CRD spells them; unknown fields are refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class DvcSource(SpecBase):
    """A file tracked by DVC: ``path`` inside the git repository ``repo`` at revision ``rev``,
    its content fetched from the DVC remote (the repository's default, or ``remote``)."""

    repo: str = Field(min_length=1)
    path: str = Field(min_length=1)
    rev: str = Field(min_length=1)
    remote: str | None = Field(default=None, min_length=1)


class DatasetSpec(SpecBase):
    builtin: BuiltinDataset | None = None
    uri: str | None = Field(default=None, min_length=1)
    dvc: DvcSource | None = None
    format: Literal["csv", "parquet"] | None = None
    target: str | None = Field(default=None, min_length=1)
    features: list[str] | None = Field(default=None, min_length=1)
    test_size: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 42
    # The S3 endpoint of an S3-compatible store, for s3:// uris and DVC remotes on S3.
    endpoint: str | None = Field(default=None, min_length=1)
    # Pod-level: the operator turns it into envFrom on the training container; training
    # reads the AWS_* variables it brings and otherwise ignores the name.
    credentials_secret: str | None = Field(default=None, min_length=1)

    @property
    def file_format(self) -> Literal["csv", "parquet"] | None:
        """The explicit format, else the one the file's suffix implies (None when it implies none)."""
        if self.format is not None:
            return self.format
        if self.uri is not None:
            path = urlparse(self.uri).path
        elif self.dvc is not None:
            path = self.dvc.path
        else:
            return None
        suffix = PurePosixPath(path).suffix.lower()
        return {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix)  # type: ignore[return-value]

    @property
    def is_object_storage(self) -> bool:
        """Whether the data may come from S3, where credentials and an endpoint apply."""
        return self.dvc is not None or (self.uri is not None and self.uri.lower().startswith("s3://"))


def dataset_problems(dataset: DatasetSpec, task: Task) -> Iterator[tuple[str, str]]:
    if sum(source is not None for source in (dataset.builtin, dataset.uri, dataset.dvc)) != 1:
        yield "spec.dataset", "set exactly one of builtin, uri or dvc"
        return
    if not dataset.is_object_storage:
        for name, value in (("endpoint", dataset.endpoint), ("credentialsSecret", dataset.credentials_secret)):
            if value is not None:
                yield f"spec.dataset.{name}", "applies only to an s3:// uri or a dvc dataset"
    if dataset.builtin is not None:
        if dataset.target not in (None, "target"):
            yield "spec.dataset.target", "built-in datasets name their target column 'target'; leave it unset"
        # A regressor can fit class labels as numbers, but a classifier cannot fit a continuous target.
        if task == "classification" and BUILTIN_TASKS[dataset.builtin] == "regression":
            yield "spec.estimator.type", f"built-in '{dataset.builtin}' has a continuous target; use a regressor"
        return
    if dataset.target is None:
        yield "spec.dataset.target", f"is required when {'uri' if dataset.uri is not None else 'dvc'} is set"
    if dataset.uri is not None:
        scheme = urlparse(dataset.uri).scheme.lower()
        if scheme not in ("http", "https", "file", "s3") and not dataset.uri.startswith("/"):
            yield "spec.dataset.uri", "must be http(s)://, s3://, file:// or an absolute path on a mounted volume"
        elif scheme == "s3" and not urlparse(dataset.uri).netloc:
            yield "spec.dataset.uri", "an s3:// uri names a bucket: s3://<bucket>/<key>"
    if dataset.endpoint is not None and urlparse(dataset.endpoint).scheme not in ("http", "https"):
        yield "spec.dataset.endpoint", "must be an http(s):// URL"
    if dataset.file_format is None:
        yield "spec.dataset.format", "cannot be inferred from the file name (not .csv or .parquet); set csv or parquet"
