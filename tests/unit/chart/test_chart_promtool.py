"""`promtool test rules` on the shipped PrometheusRule: every alert fires when it should and
stays silent when it should not (tests in promtool/alerts_test.yaml).

promtool comes with Debian's `prometheus` package (`make host-deps`); $MODELYARD_PROMTOOL
points at another one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import one, render

TESTS = Path(__file__).resolve().parent / "promtool" / "alerts_test.yaml"


def promtool() -> str:
    found = os.environ.get("MODELYARD_PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.fail("promtool not found: install Debian's prometheus package (make host-deps)")
    return found


def rule_file() -> dict[str, Any]:
    """The PrometheusRule's spec is a plain Prometheus rule file."""
    return dict(one(render("monitoring"), "PrometheusRule")["spec"])


def alert_names(rules: dict[str, Any]) -> set[str]:
    return {r["alert"] for group in rules["groups"] for r in group["rules"] if "alert" in r}


def test_promtool_rule_tests_pass(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_file(), sort_keys=False))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    check = subprocess.run([promtool(), "check", "rules", "rules.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run([promtool(), "test", "rules", TESTS.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    cases = [case for test in yaml.safe_load(TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = alert_names(rule_file())
    assert len(names) == 6, names
    assert names - firing == set(), f"alerts never shown firing: {names - firing}"
    assert names - silent == set(), f"alerts never shown silent: {names - silent}"
    assert (firing | silent) <= names, f"tests of alerts that do not exist: {(firing | silent) - names}"
