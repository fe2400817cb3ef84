"""The training config (docs/contracts.md): `{"mode", "run", "spec"}`, where `spec` is the
TrainingRun `.spec` exactly as the CRD defines it (camelCase).

Every error names the field by its camelCase path, e.g.
`spec.sweep.trials: Input should be greater than or equal to 1`, because that path is what the
user wrote in their TrainingRun and what the operator copies into the status message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from .catalog import (
    BUILTIN_TASKS,
    LOWER_IS_BETTER,
    BuiltinDataset,
    EstimatorType,
    Task,
    metrics_for,
    task_of,
)
from .errors import InvalidConfig

# MLflow's own alias rule (mlflow.utils.validation): word characters and dashes, at most 255;
# "latest" and "v<digits>" are reserved (checked in PromotionSpec: pydantic regexes cannot
# look ahead).
ALIAS_PATTERN = r"^[\w\-]+$"
_RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$", re.IGNORECASE)


class _Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ModelSpec(_Spec):
    name: str = Field(min_length=1, max_length=255)
    experiment: str | None = Field(default=None, min_length=1)
    tags: dict[str, str] = Field(default_factory=dict)

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name


class EstimatorSpec(_Spec):
    type: EstimatorType
    hyperparameters: dict[str, Any] = Field(default_factory=dict)

    @property
    def task(self) -> Task:
        return task_of(self.type)


class DvcSource(_Spec):
    """A file tracked by DVC: ``path`` inside the git repository ``repo`` at revision ``rev``,
    its content fetched from the DVC remote (the repository's default, or ``remote``)."""

    repo: str = Field(min_length=1)
    path: str = Field(min_length=1)
    rev: str = Field(min_length=1)
    remote: str | None = Field(default=None, min_length=1)


class DatasetSpec(_Spec):
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


Stage = Literal["Staging", "Production"]


def _not_reserved(alias: str) -> str:
    if _RESERVED_ALIAS.match(alias):
        raise ValueError(f"'{alias}' is reserved by MLflow (latest, v<number>)")
    return alias


AliasName = Annotated[str, Field(max_length=255, pattern=ALIAS_PATTERN), AfterValidator(_not_reserved)]


class CompareTo(_Spec):
    """The current holder to beat: exactly one of an alias or a stage of the same model."""

    alias: AliasName | None = None
    stage: Stage | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CompareTo:
        if (self.alias is None) == (self.stage is None):
            raise ValueError("set exactly one of alias or stage")
        return self

    def describe(self) -> str:
        return f"alias '{self.alias}'" if self.alias is not None else f"stage {self.stage}"


class PromotionSpec(_Spec):
    alias: AliasName | None = None
    stage: Stage | None = None
    archive_existing: bool | None = None
    metric: str = Field(min_length=1)
    min_value: float | None = None
    max_value: float | None = None
    compare_to: CompareTo | None = None
    min_improvement: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _a_target(self) -> PromotionSpec:
        if self.alias is None and self.stage is None:
            raise ValueError("set alias, stage or both")
        return self

    @property
    def archive(self) -> bool:
        """Archive the stage's other versions: the default for Production, so exactly one
        version is in Production after a transition."""
        return self.archive_existing if self.archive_existing is not None else self.stage == "Production"

    @property
    def maximize(self) -> bool:
        return self.metric not in LOWER_IS_BETTER

    def describe(self) -> str:
        """Where a promoted version goes, for messages: "alias 'champion' and stage Production"."""
        parts = ([f"alias '{self.alias}'"] if self.alias else []) + ([f"stage {self.stage}"] if self.stage else [])
        return " and ".join(parts)


class ParamSpace(_Spec):
    """One sweep dimension: either an explicit `values` list or a `min`/`max` range."""

    values: list[Any] | None = Field(default=None, min_length=1)
    min: float | None = None
    max: float | None = None
    log: bool = False
    type: Literal["int", "float"] = "float"


class Objective(_Spec):
    metric: str = Field(min_length=1)
    direction: Literal["maximize", "minimize"] | None = None

    @property
    def maximize(self) -> bool:
        if self.direction is None:
            return self.metric not in LOWER_IS_BETTER
        return self.direction == "maximize"


class SweepSpec(_Spec):
    trials: int = Field(ge=1)
    parallelism: int = Field(default=1, ge=1)
    strategy: Literal["grid", "random"] = "grid"
    space: dict[str, ParamSpace] = Field(min_length=1)
    objective: Objective | None = None

    def objective_for(self, task: Task) -> Objective:
        """The objective, defaulting to the task's headline metric when the spec leaves it out."""
        if self.objective is not None:
            return self.objective
        return Objective(metric="accuracy" if task == "classification" else "rmse")


class TrainingRunSpec(_Spec):
    model: ModelSpec
    estimator: EstimatorSpec
    dataset: DatasetSpec
    promotion: PromotionSpec | None = None
    sweep: SweepSpec | None = None
    # Pod-level fields: the operator turns them into the Job; training accepts and ignores them.
    resources: dict[str, Any] | None = None
    node_selector: dict[str, Any] | None = None
    tolerations: list[Any] | None = None
    image: str | None = None
    backoff_limit: int | None = None
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None
    volumes: list[Any] | None = None
    volume_mounts: list[Any] | None = None
    env: list[Any] | None = None


class RunRef(_Spec):
    """Which TrainingRun this is; its tags link MLflow runs and versions back to the resource."""

    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    uid: str = Field(min_length=1)


class TrainingConfig(_Spec):
    mode: Literal["single", "trial", "select"] = "single"
    run: RunRef
    spec: TrainingRunSpec


def parse_config(raw: str | bytes | dict[str, Any]) -> TrainingConfig:
    """Validate a config from JSON text or a decoded mapping; raise InvalidConfig naming fields."""
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidConfig(f"config is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidConfig("config must be a JSON object with mode, run and spec")
    try:
        config = TrainingConfig.model_validate(raw)
    except ValidationError as exc:
        raise InvalidConfig(format_validation_error(exc)) from exc
    problems = [f"{path}: {message}" for path, message in _cross_field_problems(config)]
    if problems:
        raise InvalidConfig("; ".join(problems))
    return config


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"]) or "config"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {message}")
    return "; ".join(lines)


def _cross_field_problems(config: TrainingConfig) -> Iterator[tuple[str, str]]:
    """Rules that span fields (the CRD enforces most with CEL; a config may not come from it)."""
    spec = config.spec
    yield from _dataset_problems(spec.dataset, spec.estimator.task)
    allowed = metrics_for(spec.estimator.task)
    kind = "a classifier" if spec.estimator.task == "classification" else "a regressor"
    if spec.promotion is not None and spec.promotion.metric not in allowed:
        yield (
            "spec.promotion.metric",
            f"'{spec.promotion.metric}' is not a metric of {kind}; use one of {list(allowed)}",
        )
    if spec.sweep is not None:
        objective = spec.sweep.objective
        if objective is not None and objective.metric not in allowed:
            yield (
                "spec.sweep.objective.metric",
                f"'{objective.metric}' is not a metric of {kind}; use one of {list(allowed)}",
            )
        for name, dim in spec.sweep.space.items():
            yield from _space_problems(f"spec.sweep.space.{name}", dim)
    elif config.mode in ("trial", "select"):
        yield "spec.sweep", f"is required in mode '{config.mode}'"


def _dataset_problems(dataset: DatasetSpec, task: Task) -> Iterator[tuple[str, str]]:
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


def _space_problems(path: str, dim: ParamSpace) -> Iterator[tuple[str, str]]:
    has_range = dim.min is not None or dim.max is not None
    if dim.values is not None:
        if has_range:
            yield path, "set either values or min/max, not both"
        return
    if dim.min is None or dim.max is None:
        yield path, "set values, or both min and max"
        return
    if dim.min > dim.max:
        yield f"{path}.min", f"must not exceed max ({dim.max})"
    if dim.log and dim.min <= 0:
        yield f"{path}.min", "must be > 0 when log is true"
    if dim.type == "int" and math.ceil(dim.min) > math.floor(dim.max):
        yield path, f"no integer lies in [{dim.min:g}, {dim.max:g}]"
