"""Typed view of a ModelDeployment spec (crds/modeldeployments.yaml).

The CRD schema and CEL rules are the real validation; these models re-check the same rules so
a spec that slipped past an older CRD still fails with a clear message instead of a KeyError
deep in a builder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

MD_KIND = "ModelDeployment"
MD_PLURAL = "modeldeployments"
MD_LABEL = "modelyard.io/modeldeployment"
VERSION_LABEL = "modelyard.io/model-version"
RETRAIN_LABEL = "modelyard.io/retrain-for"
# Marks candidate pods (Canary/Shadow); stable pods never carry it, so "!track" selects them.
TRACK_LABEL = "modelyard.io/track"
# Replaces MD_LABEL on a shadow candidate's pods, so the ModelDeployment's Service skips them.
SHADOW_LABEL = "modelyard.io/shadow-of"
# kubectl annotate md NAME modelyard.io/rollout=promote|abort|pause|resume
ROLLOUT_ANNOTATION = "modelyard.io/rollout"

_DURATION_PART = re.compile(r"(\d+)(s|m|h|d)")
_DURATION_FULL = re.compile(r"^(\d+(s|m|h|d))+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class InvalidSpec(ValueError):
    """The spec cannot be served as written; the message names the field. ``reason`` is the
    Ready condition's."""

    def __init__(self, message: str, reason: str = "InvalidSpec") -> None:
        super().__init__(message)
        self.reason = reason


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``90s``, ``1h30m`` or ``2d`` (the CRD's cooldown format)."""
    if not _DURATION_FULL.match(text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 30m, 1h, 1h30m, 2d")
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text)))


class _Camel(BaseModel):
    # Unknown keys are ignored: the CRD already prunes them, and a newer CRD field must not
    # break an older operator.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


SelectorKind = Literal["alias", "stage", "version"]


class ModelRef(_Camel):
    name: str = Field(min_length=1)
    alias: str | None = None
    stage: Literal["Staging", "Production"] | None = None
    version: str | None = Field(default=None, pattern=r"^[0-9]+$")

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelRef:
        chosen = [v for v in (self.alias, self.stage, self.version) if v is not None]
        if len(chosen) != 1:
            raise ValueError("spec.model must set exactly one of alias, stage or version")
        return self

    @property
    def selector_kind(self) -> SelectorKind:
        if self.alias is not None:
            return "alias"
        return "stage" if self.stage is not None else "version"

    @property
    def selector_value(self) -> str:
        return str(self.alias or self.stage or self.version)

    @property
    def selector(self) -> str:
        """Human form for the printer column, e.g. ``alias=champion``."""
        return f"{self.selector_kind}={self.selector_value}"


class Autoscaling(_Camel):
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(ge=1)
    target_cpu_utilization_percentage: int = Field(
        default=80, ge=1, alias="targetCPUUtilizationPercentage"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("spec.autoscaling.minReplicas must be <= maxReplicas")
        return self


class Resources(_Camel):
    cpu: str | int | None = None
    memory: str | None = None
    gpu: int = Field(default=0, ge=0)


Strategy = Literal["Rolling", "Canary", "Shadow"]


class Analysis(_Camel):
    """Gates a candidate must pass at every step (see analysis.py)."""

    interval: str = "1m"
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    error_rate_margin: float = Field(default=0.005, ge=0, le=1)
    max_latency_ratio: float = Field(default=1.5, gt=0)
    max_divergence: float = Field(default=0.1, ge=0, le=1)
    min_requests: int = Field(default=100, ge=1)
    traffic_deadline: str = "10m"

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def traffic_deadline_seconds(self) -> float:
        return parse_duration(self.traffic_deadline)

    @model_validator(mode="after")
    def _valid_durations(self) -> Analysis:
        parse_duration(self.interval)
        parse_duration(self.traffic_deadline)
        return self


class Shadow(_Camel):
    percent: float = Field(default=10, gt=0, le=100)
    min_agreement: float = Field(default=0.95, ge=0, le=1)
    min_samples: int = Field(default=200, ge=1)
    tolerance: float = Field(default=0.01, ge=0)


class RollbackPolicy(_Camel):
    revert_alias: bool = False


class Rollout(_Camel):
    strategy: Strategy = "Rolling"
    steps: list[int] = Field(default_factory=lambda: [10, 50, 100])
    analysis: Analysis = Field(default_factory=Analysis)
    shadow: Shadow = Field(default_factory=Shadow)
    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)
    max_surge: int | str = 1
    max_unavailable: int | str = 0
    progress_deadline_seconds: int = Field(default=600, ge=30)

    @model_validator(mode="after")
    def _not_both_zero(self) -> Rollout:
        if str(self.max_surge) in {"0", "0%"} and str(self.max_unavailable) in {"0", "0%"}:
            raise ValueError("spec.rollout: maxSurge and maxUnavailable cannot both be 0")
        return self

    @model_validator(mode="after")
    def _steps_ascend_to_100(self) -> Rollout:
        steps = self.steps
        if not steps or steps[-1] != 100 or any(not 1 <= s <= 100 for s in steps):
            raise ValueError("spec.rollout.steps must be percentages in 1..100 ending at 100")
        if any(a >= b for a, b in pairwise(steps)):
            raise ValueError("spec.rollout.steps must be strictly ascending")
        return self


class Batching(_Camel):
    """Micro-batching settings passed to the model server; unset keeps the server's default."""

    max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_delay_milliseconds: int | None = Field(default=None, ge=0, le=1000)


class SecretKeyRef(_Camel):
    name: str = Field(min_length=1)
    key: str = "api-key"


class Auth(_Camel):
    api_key_secret_ref: SecretKeyRef


class Monitoring(_Camel):
    service_monitor: Literal["auto", "enabled", "disabled"] = "auto"
    labels: dict[str, str] = Field(default_factory=dict)
    interval: str = "30s"


class RegistryOverride(_Camel):
    poll_interval: float | None = Field(default=None, gt=0)


class Retrain(_Camel):
    drift_threshold: float = Field(gt=0)
    min_samples: int = Field(default=500, ge=1)
    cooldown: str = "1h"
    training_run_template: dict[str, Any]

    @property
    def cooldown_seconds(self) -> float:
        return parse_duration(self.cooldown)

    @model_validator(mode="after")
    def _valid_cooldown(self) -> Retrain:
        parse_duration(self.cooldown)
        return self


class ModelDeploymentSpec(_Camel):
    model: ModelRef
    replicas: int = Field(default=1, ge=0)
    autoscaling: Autoscaling | None = None
    resources: Resources = Field(default_factory=Resources)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    image: str | None = None
    env: list[dict[str, Any]] = Field(default_factory=list)
    batching: Batching = Field(default_factory=Batching)
    rollout: Rollout = Field(default_factory=Rollout)
    auth: Auth | None = None
    monitoring: Monitoring = Field(default_factory=Monitoring)
    registry: RegistryOverride = Field(default_factory=RegistryOverride)
    retrain: Retrain | None = None


@dataclass(frozen=True)
class ModelDeployment:
    """What the builders and reconcile need from a ModelDeployment object."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: ModelDeploymentSpec
    body: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.body.get("status") or {})


def parse_md(body: dict[str, Any]) -> ModelDeployment:
    """Typed ModelDeployment from a raw object; InvalidSpec names the offending field."""
    meta = body.get("metadata") or {}
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        raise InvalidSpec(_describe(error)) from None
    return ModelDeployment(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        spec=spec,
        body=body,
    )


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"spec.{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)
