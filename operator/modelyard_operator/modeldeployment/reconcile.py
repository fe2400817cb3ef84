"""Level-based reconcile of one ModelDeployment: registry state + spec -> children + status.

Safety rules encoded here:
- Registry unreachable: no child is applied, changed or deleted; status says so.
- Alias/stage points nowhere, or the model vanished: keep serving the last resolved version.
- A new version is rolled out by the Deployment with maxUnavailable 0 and readiness gated on
  the model being loaded, so a version that cannot load never replaces a serving pod.
"""

from __future__ import annotations

import time
from typing import Any

from modelyard_operator import API_VERSION, kube
from modelyard_operator.events import Outcome
from modelyard_operator.modeldeployment import sides
from modelyard_operator.modeldeployment.builders import (
    build_deployment,
    build_hpa,
    build_pdb,
    build_service,
    build_service_monitor,
)
from modelyard_operator.modeldeployment.models import VERSION_LABEL, ModelDeployment
from modelyard_operator.modeldeployment.pods import load_errors
from modelyard_operator.modeldeployment.progressive import Plan, plan_rollout
from modelyard_operator.modeldeployment.resolver import Resolver
from modelyard_operator.modeldeployment.rollout import analyse
from modelyard_operator.modeldeployment.status import (
    Resolution,
    compute_status,
    retraining_condition,
    transition_events,
    with_candidate,
)
from modelyard_operator.registry import RegistryError, RegistryUnavailable, ResolvedVersion
from modelyard_operator.settings import Settings

SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"
# CRDs are installed rarely; checking every 30 s keeps reconciles cheap yet notices an
# install (e.g. kube-prometheus-stack added later) without an operator restart.
CRD_CHECK_TTL = 30.0
_crd_cache: dict[str, tuple[float, bool]] = {}


def crd_installed(name: str) -> bool:
    now = time.monotonic()
    cached = _crd_cache.get(name)
    if cached is None or now - cached[0] > CRD_CHECK_TTL:
        cached = (now, kube.crd_exists(name))
        _crd_cache[name] = cached
    return cached[1]


def last_good(md: ModelDeployment) -> ResolvedVersion | None:
    """The version this MD served before, if it belongs to the model the spec names now."""
    version = md.status.get("resolvedVersion")
    if version and md.status.get("modelUri") == f"models:/{md.spec.model.name}/{version}":
        return ResolvedVersion(name=md.spec.model.name, version=str(version))
    return None


def resolve(md: ModelDeployment, resolver: Resolver) -> Resolution:
    try:
        return Resolution(resolver.resolve(md.spec.model), None)
    except RegistryError as error:
        return Resolution(last_good(md), error)


def _prune(md: ModelDeployment, api_version: str, kind: str) -> None:
    """Delete a child that the spec no longer asks for, but only one we created.

    Only a spec change can make a child unwanted, and status.observedGeneration trails the
    generation until a reconcile of the new spec has finished (pruning included). So a
    resync of an unchanged spec skips the lookup: at scale, these two reads of objects that
    are almost never there were a third of every steady reconcile's requests.
    """
    if md.status.get("observedGeneration") == md.generation:
        return
    existing = kube.get(api_version, kind, md.namespace, md.name)
    if kube.owned_by(existing, md.uid):
        kube.delete(api_version, kind, md.namespace, md.name)


def apply_children(
    md: ModelDeployment, target: ResolvedVersion, settings: Settings,
    replicas: int | None = None,
) -> dict[str, Any]:
    """Server-side apply every child; returns the live (stable) Deployment."""
    owner = md.body
    # The Deployment first: on an alias move it is the child that changes, and every
    # request before it adds to the time until the new version rolls out.
    deployment = kube.apply(build_deployment(md, target, settings, replicas), owner=owner)
    kube.apply(build_service(md), owner=owner)
    optional = (
        ("autoscaling/v2", "HorizontalPodAutoscaler", build_hpa(md)),
        ("policy/v1", "PodDisruptionBudget", build_pdb(md)),
    )
    for api_version, kind, obj in optional:
        if obj is not None:
            kube.apply(obj, owner=owner)
        else:
            _prune(md, api_version, kind)
    if crd_installed(SERVICE_MONITOR_CRD):
        monitor = build_service_monitor(md, crd_installed=True)
        if monitor is not None:
            kube.apply(monitor, owner=owner)
        else:
            _prune(md, "monitoring.coreos.com/v1", "ServiceMonitor")
    return deployment


def _template_version(deployment: dict[str, Any] | None) -> str | None:
    template = ((deployment or {}).get("spec") or {}).get("template") or {}
    return ((template.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL)


def _retraining(md: ModelDeployment) -> tuple[str, str, str] | None:
    last = md.status.get("lastRetrain")
    if not last or not last.get("trainingRun"):
        return None
    run = kube.get(API_VERSION, "TrainingRun", md.namespace, str(last["trainingRun"]))
    return retraining_condition(last, run)


def reconcile(md: ModelDeployment, settings: Settings, resolver: Resolver) -> Outcome:
    """One level-based pass; the caller writes ``status`` (when changed) and posts events."""
    resolution = resolve(md, resolver)
    plan: Plan | None = None
    wanted = resolution.target
    if isinstance(resolution.error, RegistryUnavailable) or resolution.target is None:
        # Outage, or nothing ever resolved: observe only. Never roll back or delete.
        deployment = kube.get("apps/v1", "Deployment", md.namespace, md.name)
        version = _template_version(deployment)
    else:
        # Canary/Shadow: the stable Deployment may keep the last version while a candidate
        # runs the registry's; Rolling (plan None) serves the registry's version directly.
        plan = plan_rollout(md, resolution.target, last_good(md), settings, resolver)
        serve = plan.serve if plan is not None else resolution.target
        replicas = plan.stable_replicas if plan is not None else None
        deployment = apply_children(md, serve, settings, replicas)
        if plan is not None and plan.delete_candidate:
            sides.delete_candidate(md)
        resolution = Resolution(serve, resolution.error)
        version = serve.version
    pods = kube.list_pods(md.namespace, sides.stable_selector(md)) if deployment else []
    rollout = analyse(deployment, pods, version, load_errors(pods, version))
    status = compute_status(md, resolution, rollout, _retraining(md))
    if plan is not None and wanted is not None:
        status = with_candidate(status, plan.candidate, wanted.version, md.generation)
    before, after = md.status.get("resolvedVersion"), status.get("resolvedVersion")
    promotion = (str(before), str(after)) if before and after and before != after else None
    error = resolution.error
    observed = wanted.version if wanted is not None else after
    return Outcome(
        status=status,
        events=transition_events(md.status, status) + (plan.events if plan else []),
        body=md.body,
        observed=f"!{error.reason}" if error else str(observed),
        registry_error=error,
        promotion=promotion,
        deployment_version=((deployment or {}).get("metadata") or {}).get("resourceVersion"),
    )
