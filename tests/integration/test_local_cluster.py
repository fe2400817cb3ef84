"""The foundation: the local cluster is a real one (kubelet + containerd + kube-proxy + CoreDNS).

Every pod here runs one of our images under runc, in a namespace that enforces Pod Security
"restricted". Several of these checks could not pass on a process-based stand-in: a read-only
root filesystem, the memory limit in the container's cgroup, Service names resolved by CoreDNS
and reached through kube-proxy, `kubectl logs` and `kubectl exec` through the kubelet.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import mlflow
import pytest
from kubernetes import client

from tests.helpers import wait_for

pytestmark = pytest.mark.integration
SERVING = "modelyard-serving:0.1.0"
TRAINING = "modelyard-training:0.1.0"
IMAGE_UID = 10001


def restricted(container: dict[str, Any]) -> dict[str, Any]:
    """What Pod Security "restricted" demands of a container, plus a read-only root."""
    return {**container, "securityContext": {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}


def pod_spec(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"containers": [restricted(c) for c in containers], "volumes": [{"name": "tmp", "emptyDir": {}}],
            "terminationGracePeriodSeconds": 2, **extra}


def http_container(name: str = "web") -> dict[str, Any]:
    return {"name": name, "image": SERVING,
            "command": ["python", "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", "/app"],
            "ports": [{"containerPort": 8080, "name": "http"}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}


def http_deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec(http_container())}},
    }


def _available(apps: client.AppsV1Api, ns: str, name: str) -> bool:
    d = apps.read_namespaced_deployment(name, ns)
    return any(c.type == "Available" and c.status == "True" for c in d.status.conditions or [])


def _running_pod(core: client.CoreV1Api, ns: str, selector: str) -> client.V1Pod | None:
    pods = [p for p in core.list_namespaced_pod(ns, label_selector=selector).items if p.status.phase == "Running"]
    return pods[0] if pods else None


def test_deployment_runs_in_containerd_on_the_real_kubelet(cluster, namespace):
    apps = client.AppsV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, http_deployment("web"))
    wait_for(lambda: _available(apps, namespace, "web"), 120, what="Deployment Available")
    pod = _running_pod(core, namespace, "app=web")
    assert pod.spec.node_name == "modelyard-local"
    node = core.read_node("modelyard-local")
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    assert node.status.node_info.kubelet_version == "v1.35.4"
    assert pod.status.container_statuses[0].container_id.startswith("containerd://")
    assert pod.status.pod_ip.startswith("10.88.")
    with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/", timeout=5) as resp:
        assert resp.status == 200


def test_restricted_pod_runs_as_image_uid_with_read_only_root(cluster, namespace):
    apps = client.AppsV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, http_deployment("ro"))
    pod = wait_for(lambda: _running_pod(core, namespace, "app=ro"), 120, what="running pod")
    ids = cluster.kubectl("-n", namespace, "exec", pod.metadata.name, "--", "id", "-u").stdout.strip()
    assert ids == str(IMAGE_UID)
    write = cluster.kubectl("-n", namespace, "exec", pod.metadata.name, "--", "python", "-c",
                            "open('/probe', 'w')", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    ok = cluster.kubectl("-n", namespace, "exec", pod.metadata.name, "--", "python", "-c",
                         "open('/tmp/probe', 'w').write('x')", check=False)
    assert ok.returncode == 0, ok.stderr


def test_pod_security_restricted_rejects_a_root_pod(cluster, namespace):
    core = client.CoreV1Api(cluster.api)
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod(namespace, {"metadata": {"name": "root"}, "spec": {
            "containers": [{"name": "c", "image": SERVING, "securityContext": {"runAsUser": 0}}]}})
    assert err.value.status == 403
    assert "restricted" in err.value.body and "runAsNonRoot" in err.value.body


def test_memory_limit_is_in_the_container_cgroup(cluster, namespace):
    core = client.CoreV1Api(cluster.api)
    container = {**http_container("c"), "resources": {"limits": {"memory": "96Mi", "cpu": "500m"}}}
    core.create_namespaced_pod(namespace, {"metadata": {"name": "mem", "labels": {"app": "mem"}},
                                           "spec": pod_spec(container)})
    wait_for(lambda: _running_pod(core, namespace, "app=mem"), 120, what="running pod")
    read = ("import pathlib; v1 = pathlib.Path('/sys/fs/cgroup/memory/memory.limit_in_bytes'); "
            "print((v1 if v1.exists() else pathlib.Path('/sys/fs/cgroup/memory.max')).read_text())")
    out = cluster.kubectl("-n", namespace, "exec", "mem", "--", "python", "-c", read).stdout.strip()
    assert int(out) == 96 * 1024 * 1024


def test_service_name_resolves_and_routes_through_kube_proxy(cluster, namespace):
    apps = client.AppsV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, http_deployment("backend", replicas=2))
    core.create_namespaced_service(namespace, {"metadata": {"name": "backend"}, "spec": {
        "selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": "http"}]}})
    wait_for(lambda: _available(apps, namespace, "backend"), 120, what="backend Available")
    script = ("import socket, urllib.request, json; "
              f"name = 'backend.{namespace}.svc.cluster.local'; "
              "addr = socket.gethostbyname(name); "
              "code = urllib.request.urlopen('http://backend/', timeout=5).status; "
              "print(json.dumps([addr, code]))")
    core.create_namespaced_pod(namespace, {"metadata": {"name": "client"}, "spec": pod_spec(
        {"name": "c", "image": TRAINING, "command": ["python", "-c", script],
         "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}, restartPolicy="Never")})
    wait_for(lambda: core.read_namespaced_pod("client", namespace).status.phase in ("Succeeded", "Failed"), 120,
             what="client pod finished")
    logs = cluster.pod_log(namespace, "client", "c")
    assert core.read_namespaced_pod("client", namespace).status.phase == "Succeeded", logs
    addr, code = json.loads(logs.strip().splitlines()[-1])
    assert addr == core.read_namespaced_service("backend", namespace).spec.cluster_ip
    assert code == 200


def test_names_outside_the_cluster_do_not_resolve(cluster, namespace):
    core = client.CoreV1Api(cluster.api)
    script = ("import socket\ntry:\n    socket.gethostbyname('pypi.org')\n    print('resolved')\n"
              "except socket.gaierror:\n    print('nxdomain')\n")
    core.create_namespaced_pod(namespace, {"metadata": {"name": "dns"}, "spec": pod_spec(
        {"name": "c", "image": TRAINING, "command": ["python", "-c", script]}, restartPolicy="Never")})
    wait_for(lambda: core.read_namespaced_pod("dns", namespace).status.phase == "Succeeded", 120, what="dns pod")
    assert cluster.pod_log(namespace, "dns", "c").strip() == "nxdomain"


def test_deleting_a_deployment_stops_its_containers(cluster, namespace):
    apps = client.AppsV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, http_deployment("gc", replicas=2))
    wait_for(lambda: _available(apps, namespace, "gc"), 120, what="gc Available")
    ips = [p.status.pod_ip for p in core.list_namespaced_pod(namespace, label_selector="app=gc").items]
    apps.delete_namespaced_deployment("gc", namespace, propagation_policy="Background")
    wait_for(lambda: not core.list_namespaced_pod(namespace, label_selector="app=gc").items, 90,
             what="pods collected")

    def unreachable(ip: str) -> bool:
        try:
            urllib.request.urlopen(f"http://{ip}:8080/", timeout=1)
        except OSError:
            return True
        return False

    assert all(unreachable(ip) for ip in ips)


def _job(name: str, code: int, policy: bool = False) -> dict[str, Any]:
    script = (f"import sys; print('progress: step 1 of 1', flush=True); "
              f"open('/dev/termination-log', 'w').write('bye {code}'); sys.exit({code})")
    spec: dict[str, Any] = {"backoffLimit": 4, "template": {"spec": pod_spec(
        {"name": "main", "image": TRAINING, "command": ["python", "-c", script]}, restartPolicy="Never")}}
    if policy:
        spec["podFailurePolicy"] = {"rules": [{"action": "FailJob", "onExitCodes": {
            "containerName": "main", "operator": "In", "values": [3]}}]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def _job_condition(batch: client.BatchV1Api, ns: str, name: str, ctype: str) -> Any:
    job = batch.read_namespaced_job(name, ns)
    return next((c for c in job.status.conditions or [] if c.type == ctype and c.status == "True"), None)


def test_job_completes_with_termination_message_and_logs(cluster, namespace):
    batch = client.BatchV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    batch.create_namespaced_job(namespace, _job("ok", 0))
    wait_for(lambda: _job_condition(batch, namespace, "ok", "Complete"), 120, what="Job Complete")
    pod = core.list_namespaced_pod(namespace, label_selector="job-name=ok").items[0]
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Succeeded"
    assert (terminated.exit_code, terminated.message) == (0, "bye 0")
    assert "progress: step 1 of 1" in cluster.pod_log(namespace, pod.metadata.name, "main")


def test_job_exit_three_fails_at_once_under_pod_failure_policy(cluster, namespace):
    batch = client.BatchV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    batch.create_namespaced_job(namespace, _job("bad", 3, policy=True))
    cond = wait_for(lambda: _job_condition(batch, namespace, "bad", "Failed"), 120, what="Job Failed")
    assert cond.reason == "PodFailurePolicy"
    pods = core.list_namespaced_pod(namespace, label_selector="job-name=bad").items
    assert len(pods) == 1, "FailJob must not retry"
    assert pods[0].status.container_statuses[0].state.terminated.exit_code == 3


def _gpu_pod(name: str, tolerate: bool) -> dict[str, Any]:
    spec = pod_spec({"name": "c", "image": TRAINING, "resources": {"limits": {"nvidia.com/gpu": "1"}}},
                    nodeSelector={"nvidia.com/gpu.present": "true"})
    if tolerate:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_gpu_pods_bind_to_fake_gpu_nodes_only_with_toleration(cluster, namespace):
    core = client.CoreV1Api(cluster.api)
    gpu_nodes = [n for n in core.list_node(label_selector="nvidia.com/gpu.present=true").items]
    assert len(gpu_nodes) == 2 and all(n.status.capacity["nvidia.com/gpu"] == "4" for n in gpu_nodes)
    core.create_namespaced_pod(namespace, _gpu_pod("with-tol", True))
    core.create_namespaced_pod(namespace, _gpu_pod("no-tol", False))
    node = wait_for(lambda: core.read_namespaced_pod("with-tol", namespace).spec.node_name, 60, what="binding")
    assert node.startswith("modelyard-gpu-")
    # kwok plays the kubelet there: the pod is Running without any process on this host
    wait_for(lambda: core.read_namespaced_pod("with-tol", namespace).status.phase == "Running", 60,
             what="fake GPU pod Running")
    unsched = wait_for(lambda: next((c for c in core.read_namespaced_pod("no-tol", namespace).status.conditions or []
                                     if c.type == "PodScheduled" and c.status == "False"), None), 60)
    assert unsched.reason == "Unschedulable"
    assert core.read_namespaced_pod("no-tol", namespace).spec.node_name is None


def test_env_from_secret_configmap_and_downward_api(cluster, namespace):
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"token": "s3cret"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"mode": "fast"}})
    script = ("import os, json; open('/dev/termination-log','w').write(json.dumps("
              "[os.environ['TOKEN'], os.environ['MODE'], os.environ['POD'], os.environ['GREETING']]))")
    core.create_namespaced_pod(namespace, {"metadata": {"name": "envpod"}, "spec": pod_spec({
        "name": "c", "image": TRAINING, "command": ["python", "-c", script],
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "mode"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "GREETING", "value": "hi $(POD)"}]}, restartPolicy="Never")})
    pod = wait_for(lambda: (p := core.read_namespaced_pod("envpod", namespace)).status.phase == "Succeeded" and p,
                   120, what="envpod Succeeded")
    message = json.loads(pod.status.container_statuses[0].state.terminated.message)
    assert message == ["s3cret", "fast", "envpod", "hi envpod"]


def test_an_image_that_is_not_here_never_runs(cluster, namespace):
    core = client.CoreV1Api(cluster.api)
    # Never: the node must not even try a registry (nothing leaves this host)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "absent"}, "spec": pod_spec(
        {"name": "c", "image": "modelyard-absent:0.0.0", "imagePullPolicy": "Never"})})

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod("absent", namespace).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.reason if waiting and waiting.reason == "ErrImageNeverPull" else None

    wait_for(waiting_reason, 120, what="ErrImageNeverPull")
    assert core.read_namespaced_pod("absent", namespace).status.phase == "Pending"


def test_liveness_failure_restarts_container(cluster, namespace):
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "live"}, "spec": pod_spec({
        "name": "c", "image": SERVING, "command": ["python", "-c", "import time; time.sleep(600)"],
        "livenessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1, "failureThreshold": 2}})})
    wait_for(lambda: core.read_namespaced_pod("live", namespace).status.container_statuses[0].restart_count >= 1,
             120, what="a liveness restart")


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
