"""Static checks of crds/modeldeployments.yaml: documented, shaped as promised, in sync.

The CEL rules themselves are exercised against a real API server in
tests/integration/test_modeldeployment_children.py (test_invalid_specs_are_rejected_by_the_api_server).

Run this file as a script (``python tests/unit/operator/test_md_crd.py``) to re-copy
TrainingRun's spec schema into spec.retrain.trainingRunTemplate after TrainingRun changes.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
MD_CRD = REPO / "crds" / "modeldeployments.yaml"
TR_CRD = REPO / "crds" / "trainingruns.yaml"
TEMPLATE_INDENT = 22
TEMPLATE_DESCRIPTION = (
    "The spec of the TrainingRun to create on a trigger (validated like a TrainingRun's spec). "
    "Set promotion.alias to the alias this deployment follows to close the loop."
)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def expected_template() -> dict[str, Any]:
    """TrainingRun's spec schema, minus its immutability rule (a template may be edited)."""
    spec = copy.deepcopy(root_schema(load(TR_CRD))["properties"]["spec"])
    rules = [r for r in spec.get("x-kubernetes-validations", [])
             if r["rule"].strip() != "self == oldSelf"]
    if rules:
        spec["x-kubernetes-validations"] = rules
    spec["description"] = TEMPLATE_DESCRIPTION
    return spec


def template_of(crd: dict[str, Any]) -> dict[str, Any]:
    retrain = root_schema(crd)["properties"]["spec"]["properties"]["retrain"]
    template: dict[str, Any] = retrain["properties"]["trainingRunTemplate"]
    return template


def undocumented(schema: dict[str, Any], path: str = "") -> list[str]:
    missing = []
    for name, prop in (schema.get("properties") or {}).items():
        where = f"{path}.{name}"
        if name != "metadata" and not prop.get("description"):
            missing.append(where)
        missing += undocumented(prop, where)
        if isinstance(prop.get("items"), dict):
            missing += undocumented(prop["items"], f"{where}[]")
        if isinstance(prop.get("additionalProperties"), dict):
            missing += undocumented(prop["additionalProperties"], f"{where}{{}}")
    return missing


def test_names_scope_and_subresources() -> None:
    crd = load(MD_CRD)
    assert crd["metadata"]["name"] == "modeldeployments.modelyard.io"
    spec = crd["spec"]
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["md"] and spec["names"]["categories"] == ["modelyard"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = load(MD_CRD)["spec"]["versions"][0]["additionalPrinterColumns"]
    default = [(c["name"], c["jsonPath"]) for c in columns if not c.get("priority")]
    assert default == [
        ("Model", ".spec.model.name"), ("Selector", ".status.selector"),
        ("Version", ".status.resolvedVersion"), ("Ready", ".status.readyText"),
        ("URL", ".status.url"), ("Age", ".metadata.creationTimestamp"),
    ]


def test_every_field_is_described_for_kubectl_explain() -> None:
    assert undocumented(root_schema(load(MD_CRD))) == []


def test_cel_rules_guard_the_spec() -> None:
    spec = root_schema(load(MD_CRD))["properties"]["spec"]["properties"]
    rules = {name: [r["rule"] for r in prop.get("x-kubernetes-validations", [])]
             for name, prop in spec.items()}
    assert any("has(self.alias)" in r and "== 1" in r for r in rules["model"])
    assert any("minReplicas <= self.maxReplicas" in r for r in rules["autoscaling"])
    assert any("maxSurge" in r and "maxUnavailable" in r for r in rules["rollout"])
    assert spec["rollout"]["properties"]["maxUnavailable"]["default"] == 0
    assert spec["rollout"]["properties"]["maxSurge"]["default"] == 1
    assert spec["replicas"]["default"] == 1 and spec["replicas"]["minimum"] == 0
    assert spec["monitoring"]["properties"]["serviceMonitor"]["enum"] == [
        "auto", "enabled", "disabled"]
    assert spec["model"]["properties"]["stage"]["enum"] == ["Staging", "Production"]


def test_status_declares_conditions_as_a_map_list() -> None:
    status = root_schema(load(MD_CRD))["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    for field in ("resolvedVersion", "previousVersion", "modelUri", "url", "replicas",
                  "readyReplicas", "updatedReplicas", "observedGeneration",
                  "lastPromotionTime", "lastRetrain", "selector", "readyText"):
        assert field in status


def test_training_run_template_is_validated_like_a_training_run() -> None:
    assert template_of(load(MD_CRD)) == expected_template(), (
        "TrainingRun's spec schema changed: run `python tests/unit/operator/test_md_crd.py`"
    )


def sync_template() -> None:
    """Rewrite the template block in place with TrainingRun's current spec schema."""
    text = MD_CRD.read_text()
    pad = " " * (TEMPLATE_INDENT - 2)
    start = text.index(f"{pad}trainingRunTemplate:\n") + len(f"{pad}trainingRunTemplate:\n")
    end = re.compile(rf"^ {{0,{TEMPLATE_INDENT - 1}}}\S", re.M).search(text, start)
    assert end is not None
    dumped = yaml.safe_dump(expected_template(), sort_keys=False, width=95, allow_unicode=True)
    block = "".join(" " * TEMPLATE_INDENT + line + "\n" if line else "\n"
                    for line in dumped.splitlines())
    MD_CRD.write_text(text[:start] + block + text[end.start():])


if __name__ == "__main__":
    sync_template()
    sys.exit(0)
