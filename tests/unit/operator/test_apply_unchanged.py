"""No write when nothing changed: kube.apply skips the server-side apply for a live child that
already is what it would apply, and still applies on every real change or drift.

The API server here is an in-memory stand-in that behaves like the real one where it matters
(it adds defaults and canonicalises quantities); bench_operator.py measures the same on a
real cluster.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from modelyard_operator import desired, kube, metrics
from modelyard_operator.modeldeployment.builders import build_deployment, build_service
from modelyard_operator.modeldeployment.models import parse_md
from modelyard_operator.registry import ResolvedVersion
from modelyard_operator.settings import Settings

SETTINGS = Settings(mlflow_tracking_uri="http://mlflow:5000")
MD_BODY: dict[str, Any] = {
    "apiVersion": "modelyard.io/v1alpha1", "kind": "ModelDeployment",
    "metadata": {"name": "iris", "namespace": "ns", "uid": "uid-1", "generation": 1},
    "spec": {"model": {"name": "iris", "alias": "champion"}, "resources": {"cpu": "0.5"}},
}


class Response:
    def __init__(self, obj: dict[str, Any] | None) -> None:
        self.data = json.dumps(obj).encode()


class FakeApiServer:
    """Stores applied objects, adding what a real API server adds on the way."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.applies: list[str] = []
        self.resources = SimpleNamespace(get=self._resource)

    def _resource(self, api_version: str, kind: str | None = None, name: str | None = None) -> Any:
        return SimpleNamespace(kind=kind, name=(kind or name or "").lower() + "s")

    def get(self, resource: Any, name: str, **_: Any) -> Response:
        obj = self.objects.get((resource.kind, name))
        if obj is None:
            raise kube.NotFoundError(SimpleNamespace(status=404, reason="NotFound", body=b"",
                                                     headers={}, data=b""))
        return Response(obj)

    def server_side_apply(self, resource: Any, body: dict[str, Any], name: str, **_: Any) -> Response:
        self.applies.append(body["kind"])
        live = copy.deepcopy(body)
        live["metadata"]["resourceVersion"] = str(len(self.applies))
        live["status"] = {"observedGeneration": 1}
        spec = live["spec"]
        if body["kind"] == "Deployment":
            spec.setdefault("replicas", 1)
            container = spec["template"]["spec"]["containers"][0]
            container["terminationMessagePath"] = "/dev/termination-log"
            requests = container["resources"]["requests"]
            requests["cpu"] = {"0.5": "500m"}.get(requests["cpu"], requests["cpu"])
        else:
            spec["clusterIP"] = "10.96.0.10"
        self.objects[(body["kind"], name)] = live
        return Response(live)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    fake = FakeApiServer()
    monkeypatch.setattr(kube, "_dynamic", fake)
    monkeypatch.setattr(kube, "_always_apply", False)
    monkeypatch.setattr(kube, "_applied", {})
    yield fake


def children(spec: dict[str, Any] | None = None, version: str = "1") -> list[dict[str, Any]]:
    body = copy.deepcopy(MD_BODY)
    body["spec"].update(spec or {})
    md = parse_md(body)
    return [build_service(md), build_deployment(md, ResolvedVersion("iris", version), SETTINGS)]


def apply_all(objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        kube.apply(obj, owner=MD_BODY)


def test_a_resync_that_changes_nothing_writes_nothing(server: FakeApiServer) -> None:
    apply_all(children())
    assert server.applies == ["Service", "Deployment"]
    skipped = metrics.APPLIES_SKIPPED.labels(kind="Deployment")._value.get()
    for _ in range(3):
        apply_all(children())
    assert server.applies == ["Service", "Deployment"]
    assert metrics.APPLIES_SKIPPED.labels(kind="Deployment")._value.get() == skipped + 3


def test_skipped_apply_returns_the_live_object(server: FakeApiServer) -> None:
    apply_all(children())
    live = kube.apply(children()[1], owner=MD_BODY)
    assert live["status"] == {"observedGeneration": 1}
    assert live["metadata"]["annotations"][desired.APPLIED_ANNOTATION]


def test_a_new_version_is_applied(server: FakeApiServer) -> None:
    apply_all(children())
    apply_all(children(version="2"))
    assert server.applies == ["Service", "Deployment", "Deployment"]


def test_a_changed_child_is_applied_without_reading_it_first(server: FakeApiServer) -> None:
    reads: list[str] = []
    get = server.get

    def counting_get(resource: Any, name: str, **kwargs: Any) -> Response:
        reads.append(resource.kind)
        return get(resource, name, **kwargs)

    server.get = counting_get  # type: ignore[method-assign]
    apply_all(children())
    reads.clear()
    kube.apply(children(version="2")[1], owner=MD_BODY)  # this process applied v1: no read
    assert (reads, server.applies[-1]) == ([], "Deployment")
    kube.apply(children(version="2")[1], owner=MD_BODY)  # same again: read, then skip
    assert (reads, len(server.applies)) == (["Deployment"], 3)


def test_a_field_the_operator_stopped_setting_is_applied(server: FakeApiServer) -> None:
    # A GPU limit dropped from the spec leaves the live object a superset of the desired one;
    # only the digest of what was applied shows that the apply must remove it.
    apply_all(children({"resources": {"cpu": "0.5", "gpu": 1}}))
    apply_all(children())
    assert server.applies == ["Service", "Deployment", "Deployment"]


def test_drift_is_taken_back(server: FakeApiServer) -> None:
    apply_all(children())
    live = server.objects[("Deployment", "iris")]
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "edited-by-hand"
    apply_all(children())
    assert server.applies == ["Service", "Deployment", "Deployment"]


def test_always_apply_restores_the_old_behaviour(server: FakeApiServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "_always_apply", True)
    apply_all(children())
    apply_all(children())
    assert server.applies == ["Service", "Deployment"] * 2


def test_requests_are_counted_by_verb() -> None:
    def count(verb: str, resource: str) -> float:
        value: float = metrics.KUBE_REQUESTS.labels(verb=verb, resource=resource)._value.get()
        return value

    fake = FakeApiServer()
    before = count("apply", "deployments"), count("get", "deployments")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kube, "_dynamic", fake)
        mp.setattr(kube, "_always_apply", False)
        mp.setattr(kube, "_applied", {})
        kube.apply(children()[1], owner=MD_BODY)
        kube.apply(children()[1], owner=MD_BODY)
    assert (count("apply", "deployments"), count("get", "deployments")) == (
        before[0] + 1, before[1] + 2)


# -- desired.py, the pure comparison -------------------------------------------------------

def stamp(obj: dict[str, Any]) -> dict[str, Any]:
    return desired.stamped(obj, desired.fingerprint(obj))


@pytest.mark.parametrize(("want", "live", "same"), [
    ({"a": 1}, {"a": 1, "b": 2}, True),  # fields others added are ignored
    ({"a": 1}, {"a": 2}, False),
    ({"a": {"b": 1}}, {"a": {}}, False),
    ({"a": [1, 2]}, {"a": [1, 2]}, True),
    ({"a": [1, 2]}, {"a": [1, 2, 3]}, False),  # someone replaced a list we set
    ({"a": [{"n": 1}]}, {"a": [{"n": 1, "default": True}]}, True),
    ({"a": None}, {}, True),
    ({"requests": {"cpu": "0.5", "memory": "1Gi"}}, {"requests": {"cpu": "500m", "memory": "1Gi"}}, True),
    ({"limits": {"nvidia.com/gpu": 1}}, {"limits": {"nvidia.com/gpu": "1"}}, True),
    ({"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1024Mi"}}, True),
    ({"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1G"}}, False),
    ({"label": "0.5"}, {"label": "500m"}, False),  # only resource quantities are numbers
])
def test_covers(want: dict[str, Any], live: dict[str, Any], same: bool) -> None:
    assert desired.covers(want, live) is same


def test_unchanged_needs_the_digest_of_the_same_desired_object() -> None:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"x": 1}}
    assert desired.unchanged(obj, stamp(obj))
    assert not desired.unchanged(obj, obj)  # applied by someone else, or before this check
    assert not desired.unchanged(obj, None)
    other = {**obj, "spec": {"x": 1, "y": 2}}
    assert not desired.unchanged(obj, stamp(other))  # live is a superset: y must be removed
    assert desired.fingerprint(obj) == desired.fingerprint(json.loads(json.dumps(obj)))
