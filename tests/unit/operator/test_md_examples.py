"""The ModelDeployment examples in k8s/examples/ parse and build (the API server check is in
tests/integration/test_modeldeployment_children.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from modelyard_operator.modeldeployment.builders import build_deployment
from modelyard_operator.modeldeployment.models import parse_md
from modelyard_operator.registry import ResolvedVersion
from modelyard_operator.settings import Settings

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "k8s" / "examples").glob(
    "modeldeployment-*.yaml"))


def test_there_are_examples() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"modeldeployment-alias", "modeldeployment-retrain"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_parses_and_builds(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "ModelDeployment"]
    assert docs, f"{path.name} has no ModelDeployment"
    for doc in docs:
        md = parse_md({**doc, "metadata": {**doc["metadata"], "namespace": "ml", "uid": "u"}})
        deployment = build_deployment(md, ResolvedVersion(md.spec.model.name, "1"),
                                      Settings(mlflow_tracking_uri="http://mlflow:5000"))
        assert deployment["metadata"]["name"] == doc["metadata"]["name"]
