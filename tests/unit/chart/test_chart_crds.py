"""The chart ships the API contract unchanged: helm/modelyard/crds/ == crds/, byte for byte.

Helm installs CRDs from the chart's crds/ folder, so a drift between the two would give chart
users a different API than the one tested. Refresh with:  cp crds/*.yaml helm/modelyard/crds/
"""

from __future__ import annotations

import yaml
from chartlib import CHART, REPO


def test_chart_crds_are_byte_identical_to_the_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in sorted((REPO / "crds").glob("*.yaml"))}
    chart = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.yaml"))}
    assert top, "crds/ has no CRDs"
    assert sorted(chart) == sorted(top), "chart crds/ lists other files: cp crds/*.yaml helm/modelyard/crds/"
    stale = [name for name in top if chart[name] != top[name]]
    assert not stale, f"helm/modelyard/crds/ differs from crds/ for {stale}: cp crds/*.yaml helm/modelyard/crds/"


def test_chart_crds_are_plain_crds() -> None:
    """Helm does not template files in crds/, so they must be complete CRDs as they are."""
    for path in sorted((CHART / "crds").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert [d["kind"] for d in docs] == ["CustomResourceDefinition"], path.name
        assert docs[0]["spec"]["group"] == "modelyard.io"
        assert "{{" not in path.read_text()
