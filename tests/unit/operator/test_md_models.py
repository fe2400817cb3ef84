"""Spec parsing: the same rules the CRD's CEL enforces, with messages naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from modelyard_operator.modeldeployment.models import InvalidSpec, parse_duration, parse_md


def body(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "x", "namespace": "ns", "uid": "u", "generation": 2},
            "spec": spec}


@pytest.mark.parametrize("model", [
    {"name": "iris"},
    {"name": "iris", "alias": "champion", "version": "3"},
    {"name": "iris", "alias": "a", "stage": "Production", "version": "1"},
])
def test_model_needs_exactly_one_selector(model: dict[str, Any]) -> None:
    with pytest.raises(InvalidSpec, match="exactly one of alias, stage or version"):
        parse_md(body({"model": model}))


@pytest.mark.parametrize(("model", "selector"), [
    ({"name": "iris", "alias": "champion"}, "alias=champion"),
    ({"name": "iris", "stage": "Production"}, "stage=Production"),
    ({"name": "iris", "version": "12"}, "version=12"),
])
def test_selector_forms(model: dict[str, Any], selector: str) -> None:
    assert parse_md(body({"model": model})).spec.model.selector == selector


def test_defaults() -> None:
    md = parse_md(body({"model": {"name": "iris", "alias": "a"}}))
    assert (md.namespace, md.name, md.generation) == ("ns", "x", 2)
    assert md.spec.replicas == 1
    assert (md.spec.rollout.max_surge, md.spec.rollout.max_unavailable) == (1, 0)
    assert md.spec.monitoring.service_monitor == "auto"
    assert md.spec.retrain is None


@pytest.mark.parametrize(("spec", "message"), [
    ({"rollout": {"maxSurge": 0, "maxUnavailable": "0%"}}, "cannot both be 0"),
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas must be <= maxReplicas"),
    ({"model": {"name": "iris", "stage": "Archived"}}, "spec.model.stage"),
    ({"model": {"name": "iris", "version": "v3"}}, "spec.model.version"),
    ({"replicas": -1}, "spec.replicas"),
    ({"retrain": {"driftThreshold": 0.2, "cooldown": "soon", "trainingRunTemplate": {}}},
     "invalid duration"),
    ({"retrain": {"driftThreshold": 0, "trainingRunTemplate": {}}}, "spec.retrain.driftThreshold"),
])
def test_invalid_specs_name_the_field(spec: dict[str, Any], message: str) -> None:
    full = {"model": {"name": "iris", "alias": "a"}, **spec}
    with pytest.raises(InvalidSpec, match=message):
        parse_md(body(full))


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2d", 172800),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "-1h", "1h 2m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
