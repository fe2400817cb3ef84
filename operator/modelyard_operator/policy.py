"""Tenant policy for custom resources (pure): what a spec may ask the operator's pods to do.

Whoever may create a TrainingRun or a ModelDeployment gets pods made for them by the operator,
so a spec must not reach further than its author's own RBAC would let them go directly:

- ``spec.image`` overrides must be one of the configured images or start with an allowed
  prefix (the pods would otherwise run any code, with any uid the image sets up);
- TrainingRun volumes are limited to allowed types (no hostPath by default);
- Secrets named in env (``valueFrom.secretKeyRef``), in secret volumes or as a TrainingRun's
  ``dataset.credentialsSecret`` (envFrom) are refused unless
  the setting allows them. The operator cannot tell who wrote a spec, so it cannot check the
  author's RBAC; with ``allow_secret_refs`` the chart's ValidatingAdmissionPolicy does that
  check at apply time (``authorizer``: the requesting user must be able to ``get`` each Secret).

The same rules are enforced twice: at apply time by the chart's ValidatingAdmissionPolicy
(helm/modelyard/templates/admissionpolicy.yaml) and here, for clusters without it. Both read
raw camelCase specs, so the field paths in messages are the ones users write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelyard_operator.settings import Settings

TEMPLATE_PATH = "spec.retrain.trainingRunTemplate"


@dataclass(frozen=True)
class Violation:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Policy:
    images: frozenset[str]
    image_prefixes: tuple[str, ...]
    volume_types: frozenset[str]
    allow_secret_refs: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            images=frozenset({settings.training_image, settings.serving_image}),
            image_prefixes=tuple(settings.allowed_image_prefixes),
            volume_types=frozenset(settings.allowed_volume_types),
            allow_secret_refs=settings.allow_secret_refs,
        )

    def image_allowed(self, image: str) -> bool:
        return image in self.images or any(image.startswith(p) for p in self.image_prefixes)


def describe(violations: Iterable[Violation]) -> str:
    """One message naming every offending field, for a condition and an Event."""
    return "; ".join(str(v) for v in violations)


def _image(spec: Mapping[str, Any], policy: Policy, path: str) -> list[Violation]:
    image = spec.get("image")
    if image is None or policy.image_allowed(str(image)):
        return []
    allowed = sorted(policy.images) + [f"{p}*" for p in policy.image_prefixes]
    return [Violation(f"{path}.image", f"image {image!r} is not allowed by the operator's "
                      f"policy (allowed: {', '.join(allowed)})")]


def _env_secrets(spec: Mapping[str, Any], policy: Policy, path: str) -> list[Violation]:
    if policy.allow_secret_refs:
        return []
    found = []
    for index, item in enumerate(spec.get("env") or []):
        ref = ((item or {}).get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:
            found.append(Violation(
                f"{path}.env[{index}].valueFrom.secretKeyRef",
                f"Secret {ref.get('name')!r}: env from Secrets is not allowed by the "
                "operator's policy"))
    return found


def _dataset_secret(spec: Mapping[str, Any], policy: Policy, path: str) -> list[Violation]:
    name = (spec.get("dataset") or {}).get("credentialsSecret")
    if policy.allow_secret_refs or name is None:
        return []
    return [Violation(f"{path}.dataset.credentialsSecret",
                      f"Secret {name!r}: Secrets in specs are not allowed by the operator's policy")]


def _volume_type(volume: Mapping[str, Any]) -> str:
    sources = [key for key in volume if key != "name"]
    return sources[0] if len(sources) == 1 else ",".join(sorted(sources)) or "<none>"


def _secret_volume(volume: Mapping[str, Any]) -> bool:
    if "secret" in volume:
        return True
    sources = (volume.get("projected") or {}).get("sources") or []
    return any("secret" in (source or {}) for source in sources)


def _volumes(spec: Mapping[str, Any], policy: Policy, path: str) -> list[Violation]:
    found = []
    for index, volume in enumerate(spec.get("volumes") or []):
        volume = volume or {}
        kind = _volume_type(volume)
        where = f"{path}.volumes[{index}]"
        if kind not in policy.volume_types:
            found.append(Violation(where, f"volume type {kind!r} is not allowed by the "
                                   f"operator's policy (allowed: "
                                   f"{', '.join(sorted(policy.volume_types)) or 'none'})"))
        elif _secret_volume(volume) and not policy.allow_secret_refs:
            found.append(Violation(where, "volumes from Secrets are not allowed by the "
                                   "operator's policy"))
    return found


def trainingrun_violations(spec: Mapping[str, Any], policy: Policy,
                           path: str = "spec") -> list[Violation]:
    """Every policy breach of a TrainingRun spec (or of a template of one, under ``path``)."""
    return (_image(spec, policy, path) + _volumes(spec, policy, path) + _env_secrets(spec, policy, path)
            + _dataset_secret(spec, policy, path))


def modeldeployment_violations(spec: Mapping[str, Any], policy: Policy) -> list[Violation]:
    """Every policy breach of a ModelDeployment spec, its retraining template included: the
    operator creates that TrainingRun itself, so admission would only see the operator."""
    found = _image(spec, policy, "spec") + _env_secrets(spec, policy, "spec")
    template = (spec.get("retrain") or {}).get("trainingRunTemplate")
    if isinstance(template, Mapping):
        found += trainingrun_violations(template, policy, TEMPLATE_PATH)
    return found
