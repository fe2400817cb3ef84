"""The serving dashboard compares candidate and stable the way the canary gates do."""

from __future__ import annotations

from chartlib import load_dashboards


def test_candidate_vs_stable_panels_split_by_version() -> None:
    board = load_dashboards()["serving.json"]
    panels = {p["title"]: p for p in board["panels"]}
    for title in ("Canary: error rate by version", "Canary: latency p99 by version",
                  "Canary: predicted class share by version"):
        exprs = [t["expr"] for t in panels[title]["targets"]]
        assert exprs and all("model_version" in e for e in exprs), title
    p99 = panels["Canary: latency p99 by version"]["targets"][0]["expr"]
    assert p99.startswith("histogram_quantile(0.99,") and "group_left(model_version)" in p99
    errors = " ".join(t["expr"] for t in panels["Canary: error rate by version"]["targets"])
    assert "modelyard_serving_model_errors_total" in errors and 'status=~"5.."' in errors
