"""Typed views of a TrainingRun and of the training pod's termination-message result.

The CRD schema is the real validator; these models give the controller typed access and
catch the rare spec that slips past it (e.g. a CRD older than the operator).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelyard_operator import API_VERSION

KIND = "TrainingRun"
PLURAL = "trainingruns"
RUN_LABEL = "modelyard.io/trainingrun"
MODE_LABEL = "modelyard.io/training-mode"
COMMON_LABELS = {
    "app.kubernetes.io/managed-by": "modelyard",
    "app.kubernetes.io/part-of": "modelyard",
}
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

Mode = Literal["single", "trial", "select"]

CLASSIFIERS = frozenset({
    "logistic_regression", "random_forest_classifier", "gradient_boosting_classifier", "svc",
    "knn_classifier", "mlp_classifier",
})
REGRESSORS = frozenset({
    "linear_regression", "ridge", "random_forest_regressor", "gradient_boosting_regressor",
    "svr", "knn_regressor", "mlp_regressor",
})


class _Spec(BaseModel):
    # Unknown fields are kept, not rejected: the apiserver already pruned/validated them.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ModelRef(_Spec):
    name: str = Field(min_length=1, max_length=256)
    experiment: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class Estimator(_Spec):
    type: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_type(self) -> Estimator:
        if self.type not in CLASSIFIERS | REGRESSORS:
            raise ValueError(f"type: unsupported estimator {self.type!r}")
        return self


class DvcSource(_Spec):
    repo: str = Field(min_length=1)
    path: str = Field(min_length=1)
    rev: str = Field(min_length=1)
    remote: str | None = None


class Dataset(_Spec):
    builtin: str | None = None
    uri: str | None = None
    dvc: DvcSource | None = None
    target: str | None = None
    # A Secret whose keys (AWS_*) reach the training container through envFrom.
    credentials_secret: str | None = Field(default=None, min_length=1, alias="credentialsSecret")
    endpoint: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Dataset:
        if sum(source is not None for source in (self.builtin, self.uri, self.dvc)) != 1:
            raise ValueError("set exactly one of builtin, uri or dvc")
        if (self.uri is not None or self.dvc is not None) and not self.target:
            raise ValueError(f"target: required with {'uri' if self.uri is not None else 'dvc'}")
        return self


Stage = Literal["Staging", "Production"]


class CompareTo(_Spec):
    alias: str | None = None
    stage: Stage | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CompareTo:
        if (self.alias is None) == (self.stage is None):
            raise ValueError("set exactly one of alias or stage")
        return self


class Promotion(_Spec):
    alias: str | None = None
    stage: Stage | None = None
    archive_existing: bool | None = Field(default=None, alias="archiveExisting")
    metric: str
    min_value: float | None = Field(default=None, alias="minValue")
    max_value: float | None = Field(default=None, alias="maxValue")
    compare_to: CompareTo | None = Field(default=None, alias="compareTo")
    min_improvement: float = Field(default=0.0, ge=0, alias="minImprovement")

    @model_validator(mode="after")
    def _a_target(self) -> Promotion:
        if self.alias is None and self.stage is None:
            raise ValueError("set alias, stage or both")
        return self

    def describe(self) -> str:
        """Where a promoted version goes: "alias 'champion' and stage Production"."""
        parts = ([f"alias {self.alias!r}"] if self.alias else []) + ([f"stage {self.stage}"] if self.stage else [])
        return " and ".join(parts)


class Objective(_Spec):
    metric: str
    # None: training picks by metric (minimize rmse/mae, maximize the rest).
    direction: Literal["maximize", "minimize"] | None = None


class Sweep(_Spec):
    trials: int = Field(ge=1)
    parallelism: int = Field(default=1, ge=1)
    strategy: Literal["grid", "random"] = "grid"
    space: dict[str, Any] = Field(default_factory=dict)
    objective: Objective | None = None


class Resources(_Spec):
    cpu: str | int | float | None = None
    memory: str | int | None = None
    gpu: int = Field(default=0, ge=0)


class TrainingRunSpec(_Spec):
    model: ModelRef
    estimator: Estimator
    dataset: Dataset
    promotion: Promotion | None = None
    sweep: Sweep | None = None
    resources: Resources = Field(default_factory=Resources)
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    image: str | None = None
    backoff_limit: int = Field(default=2, ge=0, alias="backoffLimit")
    active_deadline_seconds: int | None = Field(default=None, alias="activeDeadlineSeconds")
    ttl_seconds_after_finished: int | None = Field(default=None, alias="ttlSecondsAfterFinished")
    volumes: list[dict[str, Any]] = Field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = Field(default_factory=list, alias="volumeMounts")
    env: list[dict[str, Any]] = Field(default_factory=list)


class TrainingRun(BaseModel):
    """A TrainingRun as the controller sees it: identity, typed spec, raw spec, status."""

    model_config = ConfigDict(frozen=True)

    name: str
    namespace: str
    uid: str
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    spec: TrainingRunSpec
    # Passed verbatim to the training pod, which validates exactly the CRD's camelCase shape.
    raw_spec: dict[str, Any]
    status: dict[str, Any] = Field(default_factory=dict)
    body: dict[str, Any] = Field(default_factory=dict, repr=False)

    @property
    def is_sweep(self) -> bool:
        return self.spec.sweep is not None

    @property
    def is_classifier(self) -> bool:
        return self.spec.estimator.type in CLASSIFIERS

    @property
    def objective_metric(self) -> str:
        """The metric shown in the printer column: the sweep objective, else the promotion
        metric, else the task's headline metric (training's own default objective)."""
        if self.spec.sweep is not None and self.spec.sweep.objective is not None:
            return self.spec.sweep.objective.metric
        if self.spec.sweep is None and self.spec.promotion is not None:
            return self.spec.promotion.metric
        return "accuracy" if self.is_classifier else "rmse"


class InvalidSpecError(ValueError):
    """The spec cannot be run; the message names the field. ``reason`` is the condition's."""

    def __init__(self, message: str, reason: str = "InvalidSpec") -> None:
        super().__init__(message)
        self.reason = reason


def parse_run(body: dict[str, Any]) -> TrainingRun:
    """Build a TrainingRun from an API body; InvalidSpecError names the offending field."""
    meta = body.get("metadata") or {}
    raw_spec = dict(body.get("spec") or {})
    try:
        spec = TrainingRunSpec.model_validate(raw_spec)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        field = f"spec.{where}" if where else "spec"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidSpecError(f"{field}: {message}") from error
    return TrainingRun(
        name=meta["name"], namespace=meta["namespace"], uid=meta["uid"],
        generation=meta.get("generation"), labels=dict(meta.get("labels") or {}),
        spec=spec, raw_spec=raw_spec, status=dict(body.get("status") or {}),
        body={"apiVersion": body.get("apiVersion", API_VERSION), "kind": KIND,
              "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                           "uid": meta["uid"]}},
    )


class PromotionResult(BaseModel):
    """The training pod's promotion decision (contracts.md, "promotion" in the result)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    reason: str = ""
    message: str = ""
    metric: str | None = None
    value: float | None = None
    champion_version: str | None = Field(default=None, alias="championVersion")
    champion_value: float | None = Field(default=None, alias="championValue")


class TrainingResult(BaseModel):
    """The JSON a training container writes to its termination message (contracts.md)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    ok: bool
    run_id: str | None = Field(default=None, alias="runId")
    experiment_id: str | None = Field(default=None, alias="experimentId")
    model_name: str | None = Field(default=None, alias="modelName")
    version: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    promoted: bool = False
    alias: str | None = None
    trial: int | None = None
    stage: str | None = None
    promotion: PromotionResult | None = None
    reason: str | None = None
    message: str | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        # MLflow versions are numbers in some clients and strings in others; status wants text.
        return str(value) if isinstance(value, int) else value


def parse_result(message: str | None) -> TrainingResult | None:
    """The structured result, or None when the message is absent or not our JSON (e.g. the
    log tail that FallbackToLogsOnError substitutes when the process died before writing)."""
    if not message:
        return None
    try:
        data = json.loads(message)
        return TrainingResult.model_validate(data) if isinstance(data, dict) else None
    except (ValueError, ValidationError):
        return None
