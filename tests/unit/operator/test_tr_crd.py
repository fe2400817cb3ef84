"""The TrainingRun CRD documents every field, and the examples parse as runnable specs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelyard_operator.trainingrun.models import parse_run

REPO = Path(__file__).resolve().parents[3]
CRD = yaml.safe_load((REPO / "crds" / "trainingruns.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
EXAMPLES = sorted((REPO / "k8s" / "examples").glob("trainingrun-*.yaml"))


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}[*]")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")


def test_every_spec_and_status_field_is_described() -> None:
    missing = [
        path for root in ("spec", "status")
        for path, node in walk(SCHEMA["properties"][root], root)
        if "description" not in node and not path.endswith("[]") and not path.endswith("[*]")
    ]
    assert missing == []


def test_names_and_subresources() -> None:
    names = CRD["spec"]["names"]
    assert (names["shortNames"], names["categories"]) == (["tr"], ["modelyard"])
    version = CRD["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority", 0) == 0]
    assert columns == ["Phase", "Model", "Version", "Metric", "Promoted", "Age"]


def test_spec_is_immutable_by_cel() -> None:
    rules = SCHEMA["properties"]["spec"]["x-kubernetes-validations"]
    assert {"rule": "self == oldSelf",
            "message": "spec is immutable: create a new TrainingRun instead"} in rules


def test_dataset_sources_are_exclusive_and_object_store_fields_guarded() -> None:
    dataset = SCHEMA["properties"]["spec"]["properties"]["dataset"]
    messages = {r["message"] for r in dataset["x-kubernetes-validations"]}
    assert "spec.dataset: set exactly one of builtin, uri or dvc" in messages
    guarded = {r.get("fieldPath") for r in dataset["x-kubernetes-validations"] if "s3://" in r["rule"]}
    assert guarded == {".credentialsSecret", ".endpoint"}
    assert dataset["properties"]["dvc"]["required"] == ["repo", "path", "rev"]
    assert dataset["properties"]["uri"]["pattern"].startswith("^(https?://|s3://")


def test_every_cel_rule_has_a_message() -> None:
    for path, node in walk(SCHEMA, "root"):
        for rule in node.get("x-kubernetes-validations") or []:
            assert rule.get("message"), f"{path}: {rule['rule']}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_valid_runs(path: Path) -> None:
    runs = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "TrainingRun"]
    assert len(runs) == 1
    body = {**runs[0], "metadata": {**runs[0]["metadata"], "namespace": "default", "uid": "u"}}
    parse_run(body)


def test_all_examples_exist() -> None:
    assert [p.stem.removeprefix("trainingrun-") for p in EXAMPLES] == [
        "basic", "csv", "digits-sweep", "dvc", "gpu", "promotion", "sweep"]


def test_digits_example_is_the_champion_challenger_workflow() -> None:
    docs = list(yaml.safe_load_all((REPO / "k8s" / "examples" / "trainingrun-digits-sweep.yaml").read_text()))
    run = parse_run({**docs[0], "metadata": {**docs[0]["metadata"], "namespace": "ml", "uid": "u"}})
    assert run.spec.estimator.type == "mlp_classifier" and run.spec.dataset.builtin == "digits"
    assert run.spec.sweep is not None and (run.spec.sweep.trials, run.spec.sweep.strategy) == (10, "random")
    assert set(run.spec.sweep.space) == {"learning_rate_init", "hidden_layer_sizes", "max_iter"}
    promotion = run.spec.promotion
    assert promotion is not None and promotion.stage == "Production"
    assert promotion.compare_to is not None and promotion.compare_to.stage == "Production"
    (md,) = [d for d in docs if d["kind"] == "ModelDeployment"]
    assert md["spec"]["model"] == {"name": run.spec.model.name, "stage": "Production"}
