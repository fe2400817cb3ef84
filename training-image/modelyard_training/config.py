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
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from .catalog import (
    LOWER_IS_BETTER,
    EstimatorType,
    Task,
    metrics_for,
    task_of,
)
from .datasetspec import DatasetSpec, DvcSource, dataset_problems
from .datasetspec import SpecBase as _Spec
from .errors import InvalidConfig

# The dataset part of the spec lives in datasetspec.py; importers keep using this module.
__all__ = ["DatasetSpec", "DvcSource"]

# MLflow's own alias rule (mlflow.utils.validation): word characters and dashes, at most 255;
# "latest" and "v<digits>" are reserved (checked in PromotionSpec: pydantic regexes cannot
# look ahead).
ALIAS_PATTERN = r"^[\w\-]+$"
_RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$", re.IGNORECASE)


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
    yield from dataset_problems(spec.dataset, spec.estimator.task)
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
