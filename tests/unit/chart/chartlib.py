"""Helpers shared by the chart tests (unit and integration): run helm, render value sets, and
pull metric names out of PromQL.

Loaded by path (see conftest.py), so it works whatever pytest import mode is in use.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "helm" / "modelyard"
VALUES_DIR = Path(__file__).resolve().parent / "values"
HELM_VERSION = "3.22.0"
# Rendering is pinned to the local cluster's version, so the result does not depend on the
# Kubernetes version a locally built helm happens to default to.
KUBE_VERSION = "1.35.4"

# Named value sets rendered by the unit tests and dry-run applied by the integration tests.
VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "namespaced": ["namespaced.yaml"],
    "mlflow-external": ["mlflow-external.yaml"],
    "mlflow-postgres": ["mlflow-postgres.yaml"],
    "mlflow-postgres-s3": ["mlflow-postgres-s3.yaml"],
    "mlflow-gcs": ["mlflow-gcs.yaml"],
    "monitoring": ["monitoring.yaml"],
    "minimal": ["minimal.yaml"],
    "gpu-custom": ["gpu-custom.yaml"],
}


def helm_binary() -> Path:
    """helm from $MODELYARD_HELM, the shared cache, or the local tooling (which builds it)."""
    if env := os.environ.get("MODELYARD_HELM"):
        return Path(env)
    cache = Path(os.environ.get("MODELYARD_CACHE_DIR", Path.home() / ".cache" / "modelyard"))
    cached = cache / f"helm-v{HELM_VERSION}" / "helm"
    if cached.is_file():
        return cached
    sys.path.insert(0, str(REPO / "k8s" / "local"))
    from localcluster import binaries

    return Path(binaries.ensure_helm())


def helm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run helm; never raises on a non-zero exit (callers assert on it)."""
    return subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def values_args(value_set: str = "defaults", set_values: Sequence[str] = ()) -> list[str]:
    args: list[str] = []
    for name in VALUE_SETS[value_set]:
        args += ["--values", str(VALUES_DIR / name)]
    for item in set_values:
        args += ["--set", item]
    return args


def template(
    value_set: str = "defaults",
    *,
    set_values: Sequence[str] = (),
    release: str = "modelyard",
    namespace: str = "modelyard-system",
) -> subprocess.CompletedProcess[str]:
    return helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        *values_args(value_set, set_values),
    )


@functools.lru_cache(maxsize=256)
def _rendered_text(value_set: str, set_values: tuple[str, ...], release: str, namespace: str) -> str:
    # Rendering is deterministic apart from generated secrets, and many tests render the same
    # value set: one helm process per distinct input keeps the suite quick.
    proc = template(value_set, set_values=set_values, release=release, namespace=namespace)
    assert proc.returncode == 0, f"helm template {value_set} failed:\n{proc.stderr}"
    return proc.stdout


def render(
    value_set: str = "defaults",
    *,
    set_values: Sequence[str] = (),
    release: str = "modelyard",
    namespace: str = "modelyard-system",
) -> list[dict[str, Any]]:
    """The objects `helm template` renders for a value set (fails the test on a helm error).

    Each call returns fresh objects, so callers may modify them.
    """
    text = _rendered_text(value_set, tuple(set_values), release, namespace)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_error(value_set: str = "defaults", *, set_values: Sequence[str] = ()) -> str:
    """stderr of a render that must fail."""
    proc = template(value_set, set_values=set_values)
    assert proc.returncode != 0, f"helm template unexpectedly succeeded with {set_values}"
    return proc.stderr


def of_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: Iterable[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    """The single object of a kind (optionally of one app.kubernetes.io/component)."""
    found = [
        o
        for o in of_kind(objects, kind)
        if component is None or o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} ({component}), got {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(deployment: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if name is None or c["name"] == name)


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The operator container's env entries by name."""
    return {item["name"]: item for item in container(deployment).get("env", [])}


# -- PromQL ---------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
# A whole identifier (no backtracking into a shorter one) that is not a function call.
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{[^}]*\})?\s*,")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"inf", "nan", "Inf", "NaN", "atan2"}
)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression (or a Grafana label_values() query) selects."""
    if match := _LABEL_VALUES.match(expr):
        return {match.group(1)}
    if expr.strip().startswith("label_values("):
        return set()  # label_values(label): no metric named
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    text = _VARIABLES.sub("", text)
    return {name for name in _IDENT.findall(text) if name not in _KEYWORDS}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: panel targets (rows included) and variables."""
    queries: list[str] = []

    def panels(items: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        queries += [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            queries.append(query["query"] if isinstance(query, dict) else str(query))
    return queries


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((CHART / "dashboards").glob("*.json"))}


def rule_exprs(objects: Iterable[dict[str, Any]]) -> dict[str, str]:
    """alert name -> expr of every rendered PrometheusRule."""
    exprs: dict[str, str] = {}
    for rule_obj in of_kind(objects, "PrometheusRule"):
        for group in rule_obj["spec"]["groups"]:
            for rule in group["rules"]:
                exprs[rule.get("alert") or rule["record"]] = rule["expr"]
    return exprs


def exposed_sample_names(exposition: str) -> set[str]:
    """Every series name a /metrics text can produce, by metric family type.

    Labelled metrics with no children yet export only HELP/TYPE, so names are derived from
    the family type rather than from the samples present at scrape time.
    """
    from prometheus_client.parser import text_string_to_metric_families

    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names
