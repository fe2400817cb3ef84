"""Every object the chart renders, for every value set, is accepted by the real apiserver.

Server-side dry run (`kubectl apply --server-side --dry-run=server`) runs the full admission
and validation chain without persisting anything. The ServiceMonitor and PrometheusRule kinds
are validated against the real prometheus-operator CRD schemas (k8s/local/prometheus_crds.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import load_module

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


chartlib = load_module("chartlib", REPO / "tests" / "unit" / "chart" / "chartlib.py")
prometheus_crds = load_module("prometheus_crds", REPO / "k8s" / "local" / "prometheus_crds.py")


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Any) -> Iterator[None]:
    """The real CRDs, removed again afterwards when this module installed them: other tests
    check what the operator does while the ServiceMonitor CRD is absent."""
    names = list(prometheus_crds.CRD_FILES)
    present = cluster.kubectl("get", "crd", *names, "--ignore-not-found", "-o", "name").stdout.split()
    prometheus_crds.install(cluster.kubeconfig, str(cluster.kubectl_bin))
    yield
    if not present:
        cluster.kubectl("delete", "crd", *names, "--ignore-not-found", check=False)


def dry_run(cluster: Any, manifest: str) -> Any:
    return cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=chart-test",
        "-f",
        "-",
        input=manifest,
        check=False,
    )


@pytest.mark.parametrize("value_set", sorted(chartlib.VALUE_SETS))
def test_rendered_objects_pass_a_server_side_dry_run(
    cluster: Any, namespace: str, monitoring_crds: None, value_set: str
) -> None:
    # Roles can only be dry-run into namespaces that exist: watch the test namespace.
    extra = [f"config.namespaces={{{namespace}}}"] if value_set == "namespaced" else []
    objects = chartlib.render(value_set, set_values=extra, release=f"dry-{value_set}", namespace=namespace)
    manifest = yaml.safe_dump_all(objects)
    proc = dry_run(cluster, manifest)
    assert proc.returncode == 0, f"{value_set}: apiserver rejected the chart:\n{proc.stderr}"
    accepted = [line for line in proc.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(objects), proc.stdout


def test_dry_run_really_validates_monitoring_objects(cluster: Any, namespace: str, monitoring_crds: None) -> None:
    """Control: a ServiceMonitor that breaks the real schema is refused, so the pass above means
    the chart's ServiceMonitor and PrometheusRule match the prometheus-operator schemas."""
    objects = chartlib.render("monitoring", namespace=namespace)
    monitor = chartlib.one(objects, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "every minute"  # schema: a duration pattern
    proc = dry_run(cluster, yaml.safe_dump(monitor))
    assert proc.returncode != 0 and "interval" in proc.stderr, proc.stdout + proc.stderr
    rule = chartlib.one(objects, "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    proc = dry_run(cluster, yaml.safe_dump(rule))
    assert proc.returncode != 0 and "for" in proc.stderr, proc.stdout + proc.stderr
