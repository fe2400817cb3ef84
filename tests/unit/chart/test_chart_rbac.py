"""The chart's RBAC is minimal: no wildcards, and every grant is one the operator code uses.

ALLOWED is the allow-list. Each (apiGroup, resource, verb) names the operator code that needs
it, as a regex over the operator's source; when the code stops using something, its evidence
stops matching and the grant has to go. Sufficiency is proven for real by the integration test
that runs the operator under the chart's ServiceAccount (tests/integration/test_chart_install.py).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest
from chartlib import REPO, VALUE_SETS, of_kind, render

OPERATOR = REPO / "operator" / "modelyard_operator"

# (apiGroup, resource) -> verb -> regex that must match somewhere in the operator's source.
ALLOWED: dict[tuple[str, str], dict[str, str]] = {
    # framework (kopf)
    ("apiextensions.k8s.io", "customresourcedefinitions"): {
        "get": r"def crd_exists\(",  # ServiceMonitor CRD detection
        "list": r"kopf\.run\(",  # kopf's resource observer
        "watch": r"kopf\.run\(",
    },
    ("", "namespaces"): {  # kopf's namespace observer, namespaced mode only
        "list": r"namespaces=settings\.namespaces",
        "watch": r"namespaces=settings\.namespaces",
    },
    ("", "events"): {"create": r'"kind": "Event"'},
    # application
    ("modelyard.io", "trainingruns"): {
        "get": r"kube\.get\(API_VERSION, (KIND|TRAININGRUN_KIND)",
        "list": r"@kopf\.on\.(create|resume|update)\(GROUP, VERSION, PLURAL\)",
        "watch": r"@kopf\.on\.(create|resume|update)\(GROUP, VERSION, PLURAL\)",
        "patch": r"@kopf\.on\.(create|resume|update)\(GROUP, VERSION, PLURAL\)",
        "create": r"kube\.create\(run, owner=md\.body\)",
    },
    ("modelyard.io", "modeldeployments"): {
        "get": r"kube\.get\(API_VERSION, MD_KIND",
        "list": r"@kopf\.on\.(create|resume|update)\(GROUP, VERSION, MD_PLURAL\)",
        "watch": r"@kopf\.on\.(create|resume|update)\(GROUP, VERSION, MD_PLURAL\)",
        "patch": r"@kopf\.on\.(create|resume|update)\(GROUP, VERSION, MD_PLURAL\)",
    },
    ("modelyard.io", "trainingruns/status"): {"patch": r"kube\.patch_status\(API_VERSION, KIND"},
    ("modelyard.io", "modeldeployments/status"): {"patch": r"kube\.patch_status\(API_VERSION, MD_PLURAL"},
    ("modelyard.io", "trainingruns/finalizers"): {"update": r'"blockOwnerDeletion": True'},
    ("modelyard.io", "modeldeployments/finalizers"): {"update": r'"blockOwnerDeletion": True'},
    ("batch", "jobs"): {
        "get": r'kube\.get\("batch/v1", "Job"',
        "create": r"kube\.create\(build_job\(",
        "list": r'@kopf\.on\.event\("batch", "v1", "jobs"',
        "watch": r'@kopf\.on\.event\("batch", "v1", "jobs"',
    },
    ("", "pods"): {"list": r"kube\.list_pods\(", "watch": r'@kopf\.on\.event\("v1", "pods"'},
    ("apps", "deployments"): {
        "get": r'kube\.get\("apps/v1", "Deployment"',
        "create": r"kube\.apply\(build_deployment\(",  # an apply that creates is authorized as create
        "patch": r"kube\.apply\(build_deployment\(",
        "delete": r'kube\.delete\("apps/v1", "Deployment"',  # a promoted/rejected candidate
        "list": r'@kopf\.on\.event\("apps", "v1", "deployments"',
        "watch": r'@kopf\.on\.event\("apps", "v1", "deployments"',
    },
    ("", "services"): {
        "get": r"live = get\(\*key\)",  # kube.apply reads before it applies
        "create": r"kube\.apply\(build_service\(",
        "patch": r"kube\.apply\(build_service\(",
        "delete": r'kube\.delete\("v1", "Service"',  # a shadow rollout's Service
    },
    ("discovery.k8s.io", "endpointslices"): {"list": r'kube\.list_\("discovery\.k8s\.io/v1", "EndpointSlice"'},
    ("autoscaling", "horizontalpodautoscalers"): {
        "get": r'"HorizontalPodAutoscaler", build_hpa',  # pruned: get + delete when unset
        "delete": r'"HorizontalPodAutoscaler", build_hpa',
        "create": r'"kind": "HorizontalPodAutoscaler"',
        "patch": r'"kind": "HorizontalPodAutoscaler"',
    },
    ("policy", "poddisruptionbudgets"): {
        "get": r'"PodDisruptionBudget", build_pdb',
        "delete": r'"PodDisruptionBudget", build_pdb',
        "create": r'"kind": "PodDisruptionBudget"',
        "patch": r'"kind": "PodDisruptionBudget"',
    },
    ("monitoring.coreos.com", "servicemonitors"): {
        "get": r'_prune\(md, "monitoring\.coreos\.com/v1", "ServiceMonitor"\)',
        "delete": r'_prune\(md, "monitoring\.coreos\.com/v1", "ServiceMonitor"\)',
        "create": r'"kind": "ServiceMonitor"',
        "patch": r'"kind": "ServiceMonitor"',
    },
}

# Kind -> (apiGroup, resource), for every kind the operator code names.
KINDS = {
    "TrainingRun": ("modelyard.io", "trainingruns"),
    "ModelDeployment": ("modelyard.io", "modeldeployments"),
    "Job": ("batch", "jobs"),
    "Pod": ("", "pods"),
    "Deployment": ("apps", "deployments"),
    "Service": ("", "services"),
    "EndpointSlice": ("discovery.k8s.io", "endpointslices"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
    "ServiceMonitor": ("monitoring.coreos.com", "servicemonitors"),
    "Event": ("", "events"),
    "CustomResourceDefinition": ("apiextensions.k8s.io", "customresourcedefinitions"),
}


@cache
def operator_source() -> str:
    return "\n".join(p.read_text() for p in sorted(OPERATOR.rglob("*.py")))


def rules_of(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for obj in of_kind(objects, "ClusterRole") + of_kind(objects, "Role"):
        for rule in obj["rules"]:
            found.append((f"{obj['kind']}/{obj['metadata'].get('namespace', '')}", rule))
    return found


def grants(objects: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for _, rule in rules_of(objects)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_no_wildcards_anywhere(value_set: str) -> None:
    for where, rule in rules_of(render(value_set)):
        for field in ("verbs", "resources", "apiGroups"):
            assert "*" not in rule.get(field, []), f"{where}: wildcard in {field}: {rule}"
        assert "nonResourceURLs" not in rule, where
        assert "resourceNames" not in rule or rule["resourceNames"], where


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_grant_is_in_the_allow_list(value_set: str) -> None:
    extra = sorted(
        (group, resource, verb)
        for group, resource, verb in grants(render(value_set))
        if verb not in ALLOWED.get((group, resource), {})
    )
    assert not extra, f"grants the operator code does not justify: {extra}"


def test_every_allowed_grant_is_still_used_by_the_operator() -> None:
    source = operator_source()
    stale = [
        (group, resource, verb, pattern)
        for (group, resource), verbs in ALLOWED.items()
        for verb, pattern in verbs.items()
        if not re.search(pattern, source)
    ]
    assert not stale, f"the operator no longer shows a use for these grants; drop them from the chart: {stale}"


def test_every_kind_the_operator_names_is_granted() -> None:
    """A new kind in the operator code without RBAC fails here before it fails in a cluster."""
    source = operator_source()
    named = set(re.findall(r'"kind":\s*"([A-Z]\w+)"', source))
    named |= set(re.findall(r'kube\.\w+\(\s*"[^"]*",\s*"([A-Z]\w+)"', source))
    named |= {"Pod"} if "list_pods(" in source else set()
    unknown = named - set(KINDS)
    assert not unknown, f"the operator names kinds the chart does not know about: {unknown}"
    granted = {(g, r) for g, r, _ in grants(render())}
    missing = {kind for kind in named if KINDS[kind] not in granted}
    assert not missing, f"kinds used by the operator without any grant: {missing}"


def test_the_allow_list_is_fully_granted_cluster_wide() -> None:
    """Nothing on the allow-list is forgotten (namespace list/watch is namespaced-mode only)."""
    expected = {(g, r, v) for (g, r), verbs in ALLOWED.items() for v in verbs if r != "namespaces"}
    assert grants(render()) == expected


def test_namespaced_mode_grants_only_inside_the_watched_namespaces() -> None:
    objects = render("namespaced")
    cluster_role = of_kind(objects, "ClusterRole")[0]
    cluster_resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert cluster_resources == {"customresourcedefinitions", "namespaces"}
    roles = of_kind(objects, "Role")
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "modelyard-operator",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "modelyard-operator", "namespace": "modelyard-system"}
        ]
    granted = {(g, r) for g, r, _ in grants(roles)}
    assert ("apps", "deployments") in granted and ("", "namespaces") not in granted


def test_cluster_wide_mode_binds_one_cluster_role() -> None:
    objects = render()
    assert not of_kind(objects, "Role") and not of_kind(objects, "RoleBinding")
    binding = of_kind(objects, "ClusterRoleBinding")[0]
    assert binding["roleRef"]["name"] == of_kind(objects, "ClusterRole")[0]["metadata"]["name"]
    assert ("", "namespaces", "list") not in grants(objects)


def test_rbac_create_false_renders_no_rbac() -> None:
    kinds = {o["kind"] for o in render("minimal")}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"}


def test_rules_are_grouped_and_commented() -> None:
    text = (REPO / "helm" / "modelyard" / "templates" / "_rbac.tpl").read_text()
    rules = re.findall(r"^- apiGroups:", text, flags=re.M)
    commented = re.findall(r"^# (framework|application): ", text, flags=re.M)
    assert {"framework", "application"} <= set(commented)
    # Every rule follows a comment (a run of rules on one resource family shares one comment).
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("- apiGroups:"):
            previous = lines[index - 1]
            assert previous.startswith(("#", "  verbs:")), f"_rbac.tpl line {index + 1}: rule without comment"
    assert len(rules) >= 10
