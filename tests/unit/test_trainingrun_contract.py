"""The TrainingRun contract is written three times, and this test pins the three together.

The CRD (crds/trainingruns.yaml) is what users write against. The operator image models the
spec in modelyard_operator.trainingrun.models, and the training image models it again in
modelyard_training.config and catalog. The two images must not import each other, so they
cannot share one Python module; instead this test fails as soon as any two of them disagree on
the estimator catalog, the metric names, the built-in datasets or the spec's field names.
Why a test rather than generated data: docs/contracts.md, "One source of truth".
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelyard_operator.trainingrun import models as operator
from modelyard_training import catalog, config, estimators
from pydantic import BaseModel

CRD = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "trainingruns.yaml").read_text())
SPEC = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def crd(*path: str) -> dict[str, Any]:
    node: dict[str, Any] = SPEC
    for name in path:
        node = node["properties"][name]
    return node


def fields(model: type[BaseModel]) -> set[str]:
    """The camelCase names a spec model accepts, as the CRD spells them."""
    return {info.alias or name for name, info in model.model_fields.items()}


def test_estimator_types_agree_everywhere() -> None:
    in_crd = set(crd("estimator", "type")["enum"])
    assert in_crd == operator.CLASSIFIERS | operator.REGRESSORS
    assert in_crd == set(typing.get_args(catalog.EstimatorType))
    assert in_crd == set(estimators.REGISTRY)


def test_classifiers_agree_between_the_images() -> None:
    # The operator defaults the printer column's metric by task; training picks metrics by it.
    assert operator.CLASSIFIERS == catalog.CLASSIFIER_TYPES
    assert not operator.CLASSIFIERS & operator.REGRESSORS


@pytest.mark.parametrize("path", [("promotion", "metric"), ("sweep", "objective", "metric")])
def test_metric_names_agree(path: tuple[str, ...]) -> None:
    assert crd(*path)["enum"] == [*catalog.CLASSIFIER_METRICS, *catalog.REGRESSOR_METRICS]


def test_default_objective_agrees() -> None:
    for estimator, task in (("svc", "classification"), ("ridge", "regression")):
        run = operator.parse_run({
            "metadata": {"name": "r", "namespace": "n", "uid": "u"},
            "spec": {"model": {"name": "m"}, "estimator": {"type": estimator},
                     "dataset": {"builtin": "iris"}},
        })
        assert run.objective_metric == catalog.metrics_for(task)[0]


def test_builtin_datasets_agree() -> None:
    in_crd = set(crd("dataset", "builtin")["enum"])
    assert in_crd == set(typing.get_args(catalog.BuiltinDataset)) == set(catalog.BUILTIN_TASKS)


@pytest.mark.parametrize(("path", "training", "operator_model"), [
    ((), config.TrainingRunSpec, operator.TrainingRunSpec),
    (("model",), config.ModelSpec, operator.ModelRef),
    (("estimator",), config.EstimatorSpec, operator.Estimator),
    (("dataset",), config.DatasetSpec, operator.Dataset),
    (("dataset", "dvc"), config.DvcSource, operator.DvcSource),
    (("promotion",), config.PromotionSpec, operator.Promotion),
    (("promotion", "compareTo"), config.CompareTo, operator.CompareTo),
    (("sweep",), config.SweepSpec, operator.Sweep),
    (("sweep", "objective"), config.Objective, operator.Objective),
])
def test_spec_fields_agree(path: tuple[str, ...], training: type[BaseModel],
                           operator_model: type[BaseModel]) -> None:
    in_crd = set(crd(*path)["properties"])
    # Training forbids unknown fields, so a CRD field it lacks would fail every run.
    assert fields(training) == in_crd
    # The operator keeps unknown fields; it must not model one the CRD does not have.
    assert fields(operator_model) <= in_crd


@pytest.mark.parametrize("path", [("promotion", "stage"), ("promotion", "compareTo", "stage")])
def test_registry_stages_agree(path: tuple[str, ...]) -> None:
    assert set(crd(*path)["enum"]) == set(typing.get_args(config.Stage)) == set(typing.get_args(operator.Stage))


def test_dvc_fields_required_alike() -> None:
    # The CRD requires repo, path and rev (a pinned revision makes the lineage exact); so do both images.
    required = {name for name, info in config.DvcSource.model_fields.items() if info.is_required()}
    assert set(crd("dataset", "dvc")["required"]) == required == {
        name for name, info in operator.DvcSource.model_fields.items() if info.is_required()}


def test_promotion_defaults_agree() -> None:
    # The CRD documents the defaults; both images must apply the same ones.
    spec = {"stage": "Production", "metric": "f1_macro", "compareTo": {"alias": "champion"}}
    training = config.PromotionSpec.model_validate(spec)
    parsed = operator.Promotion.model_validate(spec)
    assert training.min_improvement == parsed.min_improvement == 0
    staging = config.PromotionSpec.model_validate({**spec, "stage": "Staging"})
    assert training.archive is True and staging.archive is False
    assert crd("promotion", "minImprovement")["minimum"] == 0
    assert crd("promotion")["required"] == ["metric"]
