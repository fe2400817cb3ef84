"""The local node: registers Nodes, keeps them alive, and runs the pods bound to it.

Besides the node that runs processes it registers fake GPU nodes that run nothing: the
scheduler can bind pods to them, so tests can assert GPU placement. Pods bound there are only
finalized on deletion (as a kubelet would), so namespaces never hang in Terminating.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from . import network
from .podrunner import PodWorker

log = logging.getLogger("localnode")
NODE_NAME = "modelyard-local"
GPU_NODES = ["modelyard-gpu-1", "modelyard-gpu-2"]
GPU_LABEL = ("nvidia.com/gpu.present", "true")
K8S_VERSION = "v1.35.4"


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalNode:
    def __init__(self, api: client.ApiClient, state_dir: Path, host_ip: str, api_host: str, api_port: int) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.leases = client.CoordinationV1Api(api)
        self.state_dir = state_dir
        self.host_ip = host_ip
        self.api_host = api_host
        self.api_port = api_port
        self.netns = host_ip != "127.0.0.1"
        self.ips = network.IPAllocator()
        self.workers: dict[str, PodWorker] = {}
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    # -- nodes -------------------------------------------------------------------
    def _node_body(self, name: str, gpu: bool) -> dict[str, Any]:
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "node.modelyard.io/local": "true"}
        spec: dict[str, Any] = {}
        if gpu:
            labels[GPU_LABEL[0]] = GPU_LABEL[1]
            labels["nvidia.com/gpu.product"] = "Fake-GPU"
            spec["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": spec}

    def _node_status(self, gpu: bool) -> dict[str, Any]:
        capacity = {"cpu": "32", "memory": "64Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        if gpu:
            capacity["nvidia.com/gpu"] = "4"
        stamp = _now()
        conds = [("Ready", "True", "KubeletReady", "modelyard local node is ready")] + [
            (t, "False", f"KubeletHas{s}", "ok")
            for t, s in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                         ("PIDPressure", "SufficientPID"))]
        info = {"kubeletVersion": f"{K8S_VERSION}-modelyard-local", "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "local://1",
                "osImage": "modelyard local node", "kernelVersion": os.uname().release,
                "machineID": "", "systemUUID": "", "bootID": ""}
        return {"status": {
            "capacity": capacity, "allocatable": capacity, "nodeInfo": info,
            "addresses": [{"type": "InternalIP", "address": self.host_ip}, {"type": "Hostname", "address": "local"}],
            "conditions": [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": stamp,
                            "lastTransitionTime": stamp} for t, s, r, m in conds],
        }}

    def register(self) -> None:
        for name, gpu in [(NODE_NAME, False)] + [(n, True) for n in GPU_NODES]:
            body: Any = self._node_body(name, gpu)
            try:
                self.core.create_node(body)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
                self.core.patch_node(name, {"metadata": {"labels": body["metadata"]["labels"]},
                                            "spec": body["spec"]})
            self.core.patch_node_status(name, self._node_status(gpu))
        self._renew_leases()

    def _renew_leases(self) -> None:
        for name in [NODE_NAME, *GPU_NODES]:
            body: Any = {"metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _micro_now()}}
            try:
                self.leases.patch_namespaced_lease(name, "kube-node-lease", body)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                self.leases.create_namespaced_lease("kube-node-lease", body)

    def heartbeat(self) -> None:
        beats = 0
        while not self.stopping.wait(10):
            try:
                self._renew_leases()
                beats += 1
                if beats % 4 == 0:  # full status every 40 s, like the kubelet's nodeStatusReportFrequency
                    for name, gpu in [(NODE_NAME, False)] + [(n, True) for n in GPU_NODES]:
                        self.core.patch_node_status(name, self._node_status(gpu))
            except Exception as exc:  # noqa: BLE001 - keep beating through apiserver hiccups
                log.warning("heartbeat failed: %s", exc)

    # -- pods --------------------------------------------------------------------
    def event(self, pod: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        body: Any = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "source": {"component": "modelyard-local-node", "host": NODE_NAME},
            "firstTimestamp": _now(), "lastTimestamp": _now(),
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except client.ApiException as exc:
            log.debug("event dropped: %s", exc.reason)

    def finalize_deletion(self, pod: dict[str, Any]) -> None:
        """Confirm a graceful deletion once the processes are gone (grace period 0 delete)."""
        meta = pod["metadata"]
        log.info("finalizing deletion of %s/%s", meta["namespace"], meta["name"])
        try:
            # With a body, the apiserver ignores query options: the grace period must be in it.
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=client.V1DeleteOptions(
                grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])))
        except client.ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("final delete of %s failed: %s", meta["name"], exc.reason)

    def handle(self, event_type: str, pod: dict[str, Any]) -> None:
        node_name = pod["spec"].get("nodeName")
        uid = pod["metadata"]["uid"]
        deleting = pod["metadata"].get("deletionTimestamp") is not None
        grace = pod["metadata"].get("deletionGracePeriodSeconds") or 0
        with self._lock:
            worker = self.workers.get(uid)
            if event_type == "DELETED":
                if worker:
                    worker.request_stop(0)
                    self.workers.pop(uid, None)
                return
            if node_name != NODE_NAME:
                if node_name in GPU_NODES and deleting:
                    self.finalize_deletion(pod)
                return
            if worker is None:
                phase = (pod.get("status") or {}).get("phase")
                if deleting or phase in ("Succeeded", "Failed"):
                    if deleting:
                        self.finalize_deletion(pod)
                    return
                worker = PodWorker(self, pod)
                log.info("starting %s", worker.pod_key)
                self.workers[uid] = worker
                worker.start()
            elif deleting and not worker.stop_requested.is_set():
                log.info("stopping %s (grace %ss)", worker.pod_key, grace)
                worker.request_stop(int(grace))
            elif deleting and not worker.is_alive():
                self.finalize_deletion(pod)

    def run(self) -> None:
        self.register()
        threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True).start()
        serialize = client.ApiClient().sanitize_for_serialization
        version = ""
        while not self.stopping.is_set():
            try:
                if not version:
                    pods = self.core.list_pod_for_all_namespaces()
                    version = (pods.metadata and pods.metadata.resource_version) or ""
                    for item in pods.items:
                        self._adopt(serialize(item))
                stream = watch.Watch().stream(self.core.list_pod_for_all_namespaces, resource_version=version,
                                              timeout_seconds=300, _request_timeout=330)
                for event in stream:
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    self.handle(event["type"], serialize(obj))
            except client.ApiException as exc:
                if exc.status == 410:  # resource version too old: relist
                    version = ""
                else:
                    log.warning("pod watch failed: %s; retrying", exc.reason)
                    time.sleep(1)
            except Exception as exc:  # noqa: BLE001 - the node must outlive apiserver restarts
                log.warning("pod watch interrupted: %s; retrying", exc)
                time.sleep(1)

    def _adopt(self, pod: dict[str, Any]) -> None:
        # Processes do not survive the node agent; pods that were running are restarted, or,
        # when they must not be (restartPolicy Never), marked failed so their Job can decide.
        if pod["spec"].get("nodeName") == NODE_NAME and (pod.get("status") or {}).get("phase") == "Running" \
                and pod["spec"].get("restartPolicy") == "Never" and not pod["metadata"].get("deletionTimestamp"):
            meta = pod["metadata"]
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": {
                "phase": "Failed", "reason": "NodeRestarted", "message": "the local node agent restarted"}})
            return
        self.handle("ADDED", pod)

    def shutdown(self) -> None:
        self.stopping.set()
        with self._lock:
            workers = list(self.workers.values())
        for w in workers:
            w.grace = 5
            w.stop_requested.set()
        for w in workers:
            w.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description="modelyard local node agent")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host-ip", required=True)
    parser.add_argument("--api-port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    cfg = client.Configuration()
    config.load_kube_config(args.kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = 64
    node = LocalNode(client.ApiClient(cfg), Path(args.state_dir), args.host_ip, args.host_ip, args.api_port)

    def _stop(*_: Any) -> None:
        node.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    node.run()


if __name__ == "__main__":
    main()
