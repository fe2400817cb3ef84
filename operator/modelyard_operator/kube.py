"""The only module that talks to the Kubernetes API server.

Synchronous on purpose: kopf runs sync handlers in its thread pool, so blocking calls here
never stall the event loop, and the code stays simple to test against a real cluster.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError
from kubernetes.dynamic.resource import Resource

from modelyard_operator import FIELD_MANAGER, desired, metrics

logger = logging.getLogger(__name__)

# (connect, read) seconds. A hung API call would pin a kopf worker thread forever;
# 30 s read covers large lists on a busy apiserver.
REQUEST_TIMEOUT: tuple[float, float] = (5.0, 30.0)

_lock = threading.Lock()
_dynamic: DynamicClient | None = None
# True restores the old behaviour of applying even when nothing changed (benchmarks compare).
_always_apply = False
# Digest of what this process last applied, per object: a different digest now means the
# apply is needed, so the read that would prove it can be skipped (an alias move's path).
_applied: dict[tuple[str, str, str | None, str], str] = {}
MAX_APPLIED = 100_000
CONNECTION_POOL_SIZE = 48


def configure(
    api_client: client.ApiClient | None = None, always_apply: bool | None = None,
) -> DynamicClient:
    """Build (once) the shared dynamic client: in-cluster config first, then kubeconfig.

    Tests may pass their own ``api_client`` to point the module at a specific cluster.
    """
    global _dynamic, _always_apply
    with _lock:
        if always_apply is not None:
            _always_apply = always_apply
        if api_client is not None:
            _dynamic = DynamicClient(api_client)
        elif _dynamic is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            # urllib3 keeps cpu*5 connections by default; kopf's executor and the wake pool
            # call from ~40 threads, and every extra one opened and dropped a connection.
            cfg = client.Configuration.get_default_copy()
            cfg.connection_pool_maxsize = CONNECTION_POOL_SIZE
            _dynamic = DynamicClient(client.ApiClient(cfg))
        return _dynamic


def _client() -> DynamicClient:
    return _dynamic if _dynamic is not None else configure()


def _as_dict(response: Any) -> dict[str, Any]:
    # serialize=False hands back the raw HTTP response; decoding it ourselves skips the
    # dynamic client's attribute-wrapper round trip.
    return dict(json.loads(response.data))


def _resource(api_version: str, kind_or_plural: str, verb: str, sub: str = "") -> Resource:
    """The API resource, counting one request of ``verb`` on it (every caller sends one)."""
    # Capitalised means a Kind ("Job"); lower case means a plural ("trainingruns").
    key = "kind" if kind_or_plural[:1].isupper() else "name"
    resource: Resource = _client().resources.get(api_version=api_version, **{key: kind_or_plural})
    metrics.KUBE_REQUESTS.labels(verb=verb, resource=resource.name + sub).inc()
    return resource


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """A controller ownerReference to ``owner`` (a kopf body or plain dict).

    blockOwnerDeletion makes foreground deletion of the owner wait for the children.
    """
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def with_owner(obj: dict[str, Any], owner: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``obj`` carrying a controller reference to ``owner`` (pure)."""
    result = copy.deepcopy(obj)
    if owner is not None:
        result.setdefault("metadata", {})["ownerReferences"] = [owner_reference(owner)]
    return result


def owned_by(obj: dict[str, Any] | None, uid: str) -> bool:
    """Whether ``obj`` carries an ownerReference to the object with ``uid`` (pure).

    UIDs are unique per object, so a reference to ours means we created it; a same-named
    object left by a deleted predecessor (or made by someone else) is not ours to touch.
    """
    refs = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


def apply(obj: dict[str, Any], owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """Server-side apply ``obj`` as field manager ``modelyard``; returns the live object.

    The live object is read first and the apply skipped when it already is what we would
    apply (see desired.py): a resync that changes nothing then writes nothing, which at
    a thousand objects is most of the API server's write load. A read is cheaper than an apply
    (no admission, no managed-fields merge) and reconcile needs the live object anyway.

    force_conflicts: the operator is the source of truth for every field it sets, so a
    field another manager touched (kubectl edit) is taken back instead of failing.
    """
    body = with_owner(obj, owner)
    meta = body["metadata"]
    key = (body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"])
    digest = desired.fingerprint(body)
    if not _always_apply and _applied.get(key, digest) == digest:
        live = get(*key)
        if desired.unchanged(body, live, digest):
            assert live is not None
            metrics.APPLIES_SKIPPED.labels(kind=body["kind"]).inc()
            return live
    body = desired.stamped(body, digest)
    result = _client().server_side_apply(
        _resource(body["apiVersion"], body["kind"], "apply"),
        body=body,
        name=meta["name"],
        namespace=meta.get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        _request_timeout=REQUEST_TIMEOUT,
        serialize=False,
    )
    if len(_applied) >= MAX_APPLIED:  # deleted objects' entries: forget them all at once
        _applied.clear()
    _applied[key] = digest
    return _as_dict(result)


def create(obj: dict[str, Any], owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create ``obj``; if it already exists (409) return the existing object unchanged.

    For objects whose spec must never be re-applied once running (Jobs are largely
    immutable), create-or-get is the idempotent primitive.
    """
    body = with_owner(obj, owner)
    meta = body["metadata"]
    try:
        result = _client().create(
            _resource(body["apiVersion"], body["kind"], "create"),
            body=body,
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
            _request_timeout=REQUEST_TIMEOUT,
            serialize=False,
        )
        return _as_dict(result)
    except ConflictError:
        existing = get(body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"])
        if existing is None:  # deleted between the two calls; let the caller retry
            raise
        return existing


def get(api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    """The object as a dict, or None when it does not exist."""
    try:
        result = _client().get(
            _resource(api_version, kind, "get"), name=name, namespace=namespace,
            _request_timeout=REQUEST_TIMEOUT, serialize=False,
        )
    except NotFoundError:
        return None
    return _as_dict(result)


def list_(
    api_version: str, kind: str, namespace: str | None, label_selector: str = ""
) -> list[dict[str, Any]]:
    """Objects of ``kind`` in ``namespace`` (all namespaces when None) matching the selector."""
    result = _client().get(
        _resource(api_version, kind, "list"), namespace=namespace,
        label_selector=label_selector or None, _request_timeout=REQUEST_TIMEOUT,
        serialize=False,
    )
    items: list[dict[str, Any]] = _as_dict(result).get("items") or []
    return items


def delete(
    api_version: str, kind: str, namespace: str | None, name: str,
    propagation_policy: str = "Background",
) -> None:
    """Delete the object; absent is fine. Background propagation lets the GC remove pods."""
    try:
        _client().delete(
            _resource(api_version, kind, "delete"), name=name, namespace=namespace,
            propagation_policy=propagation_policy, _request_timeout=REQUEST_TIMEOUT,
        )
    except NotFoundError:
        return


def patch_status(
    api_version: str, kind_or_plural: str, namespace: str | None, name: str,
    status: dict[str, Any],
) -> dict[str, Any] | None:
    """Merge-patch the status subresource; None when the object is gone.

    A merge patch replaces lists (conditions) wholesale, which is what we want: the caller
    always sends the complete condition list it computed.
    """
    path = _resource(api_version, kind_or_plural, "patch", "/status").path(name=name, namespace=namespace)
    try:
        result = _client().request(
            "patch", f"{path}/status", body={"status": status},
            content_type="application/merge-patch+json", field_manager=FIELD_MANAGER,
            _request_timeout=REQUEST_TIMEOUT, serialize=False,
        )
    except NotFoundError:
        return None
    return _as_dict(result)


def merge_patch(
    api_version: str, kind: str, namespace: str | None, name: str, patch: dict[str, Any],
) -> dict[str, Any] | None:
    """Merge-patch the object itself (e.g. drop a consumed annotation); None when it is gone."""
    try:
        result = _client().patch(
            _resource(api_version, kind, "patch"), body=patch, name=name, namespace=namespace,
            content_type="application/merge-patch+json", field_manager=FIELD_MANAGER,
            _request_timeout=REQUEST_TIMEOUT, serialize=False,
        )
    except NotFoundError:
        return None
    return _as_dict(result)


def crd_exists(name: str) -> bool:
    """Whether a CRD (e.g. ``servicemonitors.monitoring.coreos.com``) is installed.

    Read from the apiextensions API rather than discovery, whose cache would miss a CRD
    installed after the operator started.
    """
    return get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name) is not None


def list_pods(namespace: str, label_selector: str) -> list[dict[str, Any]]:
    """Pods matching the selector in one namespace."""
    return list_("v1", "Pod", namespace, label_selector)


def pod_termination_message(pod: dict[str, Any], container: str | None = None) -> str | None:
    """The terminated state's message of ``container`` (or the first terminated one).

    Pure helper: the kubelet puts /dev/termination-log (or, with FallbackToLogsOnError, the
    log tail) there, which is how training reports its structured result.
    """
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if container is not None and status.get("name") != container:
            continue
        terminated = (status.get("state") or {}).get("terminated")
        if terminated and terminated.get("message"):
            return str(terminated["message"])
    return None


def is_not_found(error: Exception) -> bool:
    """True for a 404 from either client flavour."""
    return isinstance(error, NotFoundError) or (
        isinstance(error, ApiException) and error.status == 404
    )


def is_namespace_terminating(error: Exception) -> bool:
    """True when the API server refused a write because its namespace is being deleted.

    That 403 is not an RBAC refusal: the namespace and everything in it are on their way out.
    """
    status = getattr(error, "status", None)
    body = getattr(error, "body", None) or ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return status == 403 and "NamespaceTerminating" in str(body)
