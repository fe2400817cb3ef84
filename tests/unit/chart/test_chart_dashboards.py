"""The Grafana dashboards shipped by the chart are well-formed dashboard JSON."""

from __future__ import annotations

import re
from typing import Any

import pytest
from chartlib import dashboard_queries, load_dashboards

DASHBOARDS = load_dashboards()
PANEL_TYPES = {"row", "timeseries", "stat", "table", "bargauge", "gauge", "state-timeline", "text"}


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def test_the_expected_dashboards_ship() -> None:
    assert set(DASHBOARDS) == {"serving.json", "training.json", "operator.json"}
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids), "dashboard uids must be unique"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_structure(name: str) -> None:
    board = DASHBOARDS[name]
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", board["uid"]), "Grafana uids are at most 40 safe characters"
    assert board["title"].startswith("modelyard / ")
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert "modelyard" in board["tags"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = all_panels(board)
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    for panel in panels:
        where = f"{name}: panel {panel['id']} {panel.get('title')!r}"
        assert panel["type"] in PANEL_TYPES, where
        assert panel.get("title"), where
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}, where
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, where
        if panel["type"] in ("row", "text"):
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        targets = panel["targets"]
        assert targets, f"{where} has no query"
        refs = [t["refId"] for t in targets]
        assert len(set(refs)) == len(refs), where
        for target in targets:
            assert target["expr"].strip(), where
            assert balanced(target["expr"]), f"{where}: unbalanced brackets in {target['expr']}"
        # Every variable a query uses exists on the dashboard.
        for target in targets:
            for var in re.findall(r"\$(\w+)", target["expr"]):
                assert var.startswith("__") or var in variables, f"{where} uses undefined ${var}"


def test_panels_do_not_overlap() -> None:
    for name, board in DASHBOARDS.items():
        cells: dict[tuple[int, int], str] = {}
        for panel in board["panels"]:
            g = panel["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: {panel['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = panel["title"]


def balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    in_string = False
    for char in expr:
        if char == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack and not in_string


def test_issue_panels_are_present() -> None:
    """The panels the chart promises (issue: serving, training, operator, drift)."""
    titles = {name: {p["title"] for p in all_panels(b)} for name, b in DASHBOARDS.items()}
    assert {
        "Requests per second",
        "Latency p50 / p95 / p99",
        "Error rate",
        "Model version over time (pods per version)",
        "Predictions by class",
        "Drift score",
        "PSI per feature",
    } <= titles["serving.json"]
    assert {"Runs by phase over time", "Latest metrics of finished runs"} <= titles["training.json"]
    assert {
        "Reconciles per second",
        "Promotions in range",
        "Registry errors per second",
        "Webhook events",
        "Retrains triggered",
    } <= titles["operator.json"]


def test_queries_exist_for_every_dashboard() -> None:
    for board in DASHBOARDS.values():
        assert len(dashboard_queries(board)) >= 5
