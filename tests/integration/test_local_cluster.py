"""The foundation: a real control plane + local node behaves like a cluster."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import mlflow
import pytest
from kubernetes import client

from tests.helpers import pid_alive, wait_for

pytestmark = pytest.mark.integration
IMAGE = "modelyard-serving:test"


def _pod_for(core: client.CoreV1Api, ns: str, selector: str) -> client.V1Pod:
    pods = core.list_namespaced_pod(ns, label_selector=selector).items
    return pods[0] if pods else None


def http_deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [{
                    "name": "web", "image": IMAGE,
                    "command": ["python", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                }]}},
        },
    }


def test_deployment_becomes_available_and_pod_ip_is_reachable(cluster, namespace):
    apps = client.AppsV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, http_deployment("web"))

    def available() -> bool:
        d = apps.read_namespaced_deployment("web", namespace)
        return any(c.type == "Available" and c.status == "True" for c in d.status.conditions or [])

    wait_for(available, 60, what="Deployment Available")
    pod = _pod_for(core, namespace, "app=web")
    assert pod.spec.node_name == "modelyard-local"
    assert pod.status.pod_ip and pod.status.pod_ip != "127.0.0.1"
    with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/", timeout=5) as resp:
        assert resp.status == 200


def test_deleting_deployment_garbage_collects_replicaset_pods_and_processes(cluster, namespace):
    apps = client.AppsV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, http_deployment("gc", replicas=2))
    def running_pids() -> list[int] | None:
        pids = [int(p.status.container_statuses[0].container_id.removeprefix("local://"))
                for p in core.list_namespaced_pod(namespace, label_selector="app=gc").items
                if p.status.phase == "Running" and p.status.container_statuses
                and p.status.container_statuses[0].container_id]
        return pids if len(pids) == 2 else None

    pids = wait_for(running_pids, 60, what="2 running pods")
    assert all(pid_alive(pid) for pid in pids)

    apps.delete_namespaced_deployment("gc", namespace, propagation_policy="Background")
    wait_for(lambda: not apps.list_namespaced_replica_set(namespace, label_selector="app=gc").items, 60,
             what="ReplicaSet collected")
    wait_for(lambda: not core.list_namespaced_pod(namespace, label_selector="app=gc").items, 60,
             what="pods collected")
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 30, what="processes exited")


def _job(name: str, code: int, policy: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": 4,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "modelyard-training:test",
            "command": ["python", "-c",
                        f"import sys; open('/dev/termination-log', 'w').write('bye {code}'); sys.exit({code})"],
        }]}},
    }
    if policy:
        spec["podFailurePolicy"] = {"rules": [{"action": "FailJob", "onExitCodes": {
            "containerName": "main", "operator": "In", "values": [3]}}]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def _job_condition(batch: client.BatchV1Api, ns: str, name: str, ctype: str) -> Any:
    job = batch.read_namespaced_job(name, ns)
    return next((c for c in job.status.conditions or [] if c.type == ctype and c.status == "True"), None)


def test_job_exit_zero_completes_with_termination_message(cluster, namespace):
    batch = client.BatchV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    batch.create_namespaced_job(namespace, _job("ok", 0))
    wait_for(lambda: _job_condition(batch, namespace, "ok", "Complete"), 60, what="Job Complete")
    pod = core.list_namespaced_pod(namespace, label_selector="job-name=ok").items[0]
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Succeeded"
    assert terminated.exit_code == 0
    assert terminated.message == "bye 0"


def test_job_exit_three_fails_at_once_under_pod_failure_policy(cluster, namespace):
    batch = client.BatchV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    batch.create_namespaced_job(namespace, _job("bad", 3, policy=True))
    cond = wait_for(lambda: _job_condition(batch, namespace, "bad", "Failed"), 60, what="Job Failed")
    assert cond.reason == "PodFailurePolicy"
    pods = core.list_namespaced_pod(namespace, label_selector="job-name=bad").items
    assert len(pods) == 1, "FailJob must not retry"
    assert pods[0].status.container_statuses[0].state.terminated.exit_code == 3


def _gpu_pod(name: str, tolerate: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "modelyard-training:test",
                                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                            "nodeSelector": {"nvidia.com/gpu.present": "true"}}
    if tolerate:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_gpu_pods_bind_to_fake_gpu_nodes_only_with_toleration(cluster, namespace):
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, _gpu_pod("with-tol", True))
    core.create_namespaced_pod(namespace, _gpu_pod("no-tol", False))
    node = wait_for(lambda: core.read_namespaced_pod("with-tol", namespace).spec.node_name, 30, what="binding")
    assert node.startswith("modelyard-gpu-")
    unsched = wait_for(lambda: next((c for c in core.read_namespaced_pod("no-tol", namespace).status.conditions or []
                                     if c.type == "PodScheduled" and c.status == "False"), None), 30)
    assert unsched.reason == "Unschedulable"
    assert core.read_namespaced_pod("no-tol", namespace).spec.node_name is None


def test_env_from_secret_and_configmap_and_unsupported_image(cluster, namespace):
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"token": "s3cret"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"mode": "fast"}})
    script = ("import os, json; open('/dev/termination-log','w').write(json.dumps("
              "[os.environ['TOKEN'], os.environ['MODE'], os.environ['POD'], os.environ['GREETING']]))")
    core.create_namespaced_pod(namespace, {"metadata": {"name": "envpod"}, "spec": {
        "restartPolicy": "Never", "containers": [{
            "name": "c", "image": "modelyard-training:test", "command": ["python", "-c", script],
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "mode"}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "GREETING", "value": "hi $(POD)"}]}]}})
    core.create_namespaced_pod(namespace, {"metadata": {"name": "nginx"}, "spec": {
        "containers": [{"name": "c", "image": "nginx:1.27"}]}})
    pod = wait_for(lambda: (p := core.read_namespaced_pod("envpod", namespace)).status.phase == "Succeeded" and p,
                   60, what="envpod Succeeded")
    message = json.loads(pod.status.container_statuses[0].state.terminated.message)
    assert message == ["s3cret", "fast", "envpod", "hi envpod"]

    events = wait_for(lambda: [e for e in core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=nginx").items if e.reason == "ImageNotSupported"], 30)
    assert "nginx:1.27" in events[0].message
    assert core.read_namespaced_pod("nginx", namespace).status.phase == "Pending"


def test_liveness_failure_restarts_container(cluster, namespace):
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "live"}, "spec": {
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 2, "containers": [{
            "name": "c", "image": "modelyard-serving:test",
            "command": ["python", "-c", "import time; time.sleep(600)"],
            "livenessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1, "failureThreshold": 2}}]}})
    wait_for(lambda: core.read_namespaced_pod("live", namespace).status.container_statuses[0].restart_count >= 1,
             60, what="a liveness restart")


def test_rbac_refuses_serviceaccount_without_rights(cluster, namespace):
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}).status.token
    cfg = client.Configuration()
    cfg.host = cluster.api_url
    cfg.ssl_ca_cert = str(cluster.state / "pki" / "ca.crt")
    cfg.api_key = {"authorization": f"Bearer {token}"}
    limited = client.CoreV1Api(client.ApiClient(cfg))
    with pytest.raises(client.ApiException) as err:
        limited.list_namespaced_secret(namespace)
    assert err.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in err.value.body


def test_mlflow_registers_a_model_version(cluster):
    mlflow.set_tracking_uri(cluster.mlflow_uri)
    c = mlflow.MlflowClient()
    name = f"foundation-{__import__('uuid').uuid4().hex[:6]}"
    c.create_registered_model(name)
    with mlflow.start_run() as run:
        mlflow.log_param("p", 1)
    mv = c.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    assert mv.version == "1"
    assert c.get_registered_model(name).name == name
