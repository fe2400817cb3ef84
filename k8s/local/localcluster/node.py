"""The local node: containerd + runc + CNI, the real kubelet and kube-proxy, CoreDNS, kwok.

One real node (``modelyard-local``) runs every pod in our images. Fake GPU nodes are Node
objects kept alive by kwok: the scheduler binds GPU pods there and they run nothing.

Host changes (all undone by ``teardown``):
* the pod bridge (network.py) with the host address every host service binds;
* ``net.ipv4.ip_forward=1`` and ``net.bridge.bridge-nf-call-iptables=1``: a pod reaching a
  ClusterIP is DNAT'ed by kube-proxy and routed back onto the bridge;
* iptables: kube-proxy's ``KUBE-*`` chains, the kubelet's, and ``MODELYARD-FORWARD`` which drops
  any forwarded pod traffic whose other end is outside the pod network. Pod traffic is never
  masqueraded, so nothing from a pod can leave this host;
* mounts under the kubelet's root directory, and the CNI network namespaces.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from . import binaries, images, network, procs
from .pki import PKI

NODE_NAME = "modelyard-local"
GPU_NODES = ["modelyard-gpu-1", "modelyard-gpu-2"]
GPU_LABEL = ("nvidia.com/gpu.present", "true")
CLUSTER_DNS = "10.96.0.10"
KUBELET_PORT = procs.env_port("KUBELET", 10250)
KUBELET_HEALTHZ_PORT = procs.env_port("KUBELET_HEALTHZ", 10248)
PROXY_METRICS_PORT = procs.env_port("PROXY_METRICS", 10249)
PROXY_HEALTHZ_PORT = procs.env_port("PROXY_HEALTHZ", 10256)
DNS_HEALTH_PORT = procs.env_port("DNS_HEALTH", 10254)
DNS_READY_PORT = procs.env_port("DNS_READY", 10255)
KWOK_PORT = procs.env_port("KWOK", 10247)
FORWARD_CHAIN = "MODELYARD-FORWARD"
COMPONENTS = ["kwok", "coredns", "kube-proxy", "kubelet", "containerd"]
SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}


def _log(msg: str) -> None:
    print(f"[node] {msg}", flush=True)


def runtime_dir(state: Path) -> Path:
    # Sockets need a short path (108 bytes); /run is also wiped on reboot, like the processes.
    return Path("/run") / f"modelyard-{network.BRIDGE}"


def containerd_address(state: Path) -> str:
    return str(runtime_dir(state) / "containerd.sock")


def containerd_root() -> Path:
    """Image content and snapshots persist in the cache, so a new cluster need not re-import."""
    return binaries.cache_root() / "containerd" / network.BRIDGE


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _containerd_config(state: Path) -> Path:
    run = runtime_dir(state)
    cni = state / "cni"
    text = f"""version = 2
root = "{containerd_root()}"
state = "{run / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{containerd_address(state)}"
[ttrpc]
  address = "{run / 'containerd.sock.ttrpc'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.PAUSE_IMAGE}"
  # This machine lacks CAP_SYS_RESOURCE: without this every sandbox fails in runc
  # ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    # Images are built here; a pull of anything else is sent to a closed port on loopback.
    config_path = "{state / 'registry'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni / 'net.d'}"
"""
    return _write(state / "containerd.toml", text)


REGISTRIES = ["docker.io", "registry.k8s.io", "ghcr.io", "quay.io", "gcr.io", "mcr.microsoft.com"]


def _registry_config(state: Path) -> None:
    for host in REGISTRIES:
        _write(state / "registry" / host / "hosts.toml", 'server = "http://127.0.0.1:9"\n')


def _cni_config(state: Path) -> None:
    conf = {
        "cniVersion": "1.0.0", "name": "modelyard",
        "plugins": [
            {"type": "bridge", "bridge": network.BRIDGE, "isGateway": True, "hairpinMode": True,
             # never masquerade: pod traffic keeps its pod address and cannot leave this host
             "ipMasq": False,
             "ipam": {"type": "host-local", "dataDir": str(state / "cni" / "ipam"),
                      "ranges": [[{"subnet": str(network.POD_CIDR), "gateway": network.BRIDGE_IP}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    _write(state / "cni" / "net.d" / "10-modelyard.conflist", json.dumps(conf, indent=2))


def _kubelet_config(state: Path, pki: PKI, host: str) -> Path:
    p = pki.path
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # this machine: cgroup v1, no systemd, swap not managed by us
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{containerd_address(state)}",
        "address": host, "port": KUBELET_PORT, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(p("kubelet-serving.crt")), "tlsPrivateKeyFile": str(p("kubelet-serving.key")),
        # logs/exec: the apiserver authenticates with its client cert; everyone else by token
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(p("ca.crt"))}},
        "authorization": {"mode": "Webhook"},
        "clusterDomain": "cluster.local", "clusterDNS": [CLUSTER_DNS],
        # the host's resolvers are not ours to send pod queries to
        "resolvConf": str(_write(state / "resolv.conf", f"nameserver {CLUSTER_DNS}\n")),
        "maxPods": 250, "serializeImagePulls": False,
        # Images are built here and cannot be pulled again: never garbage-collect them.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        # The kubelet cannot read filesystem stats of the root device here; loose thresholds
        # keep eviction from firing on bogus numbers.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "protectKernelDefaults": False, "makeIPTablesUtilChains": False,
        "nodeStatusReportFrequency": "10s", "syncFrequency": "10s",
        "volumeStatsAggPeriod": "0s",
    }
    return _write(state / "kubelet.yaml", yaml.safe_dump(config, sort_keys=False))


def _proxy_config(state: Path, kubeconfig: Path) -> Path:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "mode": "iptables", "clusterCIDR": str(network.POD_CIDR), "hostnameOverride": NODE_NAME,
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "metricsBindAddress": f"127.0.0.1:{PROXY_METRICS_PORT}",
        "healthzBindAddress": f"127.0.0.1:{PROXY_HEALTHZ_PORT}",
        # leave the conntrack sysctls alone: they are host-wide, and this host is not ours
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "nodePortAddresses": [f"{network.BRIDGE_IP}/32"],
    }
    return _write(state / "kube-proxy.yaml", yaml.safe_dump(config, sort_keys=False))


def _corefile(state: Path, kubeconfig: Path) -> Path:
    host = network.BRIDGE_IP
    text = f"""cluster.local in-addr.arpa ip6.arpa {{
    bind {host}
    errors
    health 127.0.0.1:{DNS_HEALTH_PORT}
    ready 127.0.0.1:{DNS_READY_PORT}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} modelyard-local
        pods insecure
    }}
    cache 5
    loadbalance
}}
# Nothing is forwarded: a name outside the cluster gets NXDOMAIN from here.
. {{
    bind {host}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
    return _write(state / "Corefile", text)


def _sysctl(key: str, value: str | None = None) -> str:
    path = Path("/proc/sys") / key
    if value is not None:
        path.write_text(value)
    return path.read_text().strip()


def _iptables(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=check)


def _guard_forwarding() -> None:
    """Forwarded traffic may only run between pod addresses (after kube-proxy's DNAT)."""
    pods = str(network.POD_CIDR)
    if _iptables("-N", FORWARD_CHAIN).returncode != 0:
        _iptables("-F", FORWARD_CHAIN)
    _iptables("-A", FORWARD_CHAIN, "-s", pods, "!", "-d", pods, "-j", "DROP", check=True)
    _iptables("-A", FORWARD_CHAIN, "-d", pods, "!", "-s", pods, "-j", "DROP", check=True)
    if _iptables("-C", "FORWARD", "-j", FORWARD_CHAIN).returncode != 0:
        _iptables("-I", "FORWARD", "1", "-j", FORWARD_CHAIN, check=True)


def _prepare_host(state: Path) -> None:
    saved = state / "host-sysctls.json"
    if not saved.exists():
        saved.write_text(json.dumps({k: _sysctl(k) for k in SYSCTLS}))
    _guard_forwarding()  # before forwarding is on, so no packet ever slips through
    if not Path("/proc/sys/net/bridge").exists() and shutil.which("modprobe"):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True)
    if not Path("/proc/sys/net/bridge").exists():
        raise RuntimeError("br_netfilter is not loaded (modprobe br_netfilter): kube-proxy needs it "
                           "for pod-to-Service traffic on the bridge")
    for key, value in SYSCTLS.items():
        _sysctl(key, value)


def _clients(pki: PKI, api_url: str, state: Path) -> dict[str, Path]:
    return {name: pki.kubeconfig(name, api_url, state / f"{name}.kubeconfig")
            for name in ("kubelet", "kube-proxy", "coredns", "kwok")}


def start(state: Path, pki: PKI, api_url: str, host: str, admin_kubeconfig: Path) -> None:
    bins = {**binaries.ensure_k8s(), **binaries.ensure_addons()}
    _prepare_host(state)
    kcs = _clients(pki, api_url, state)
    _cni_config(state)
    _registry_config(state)
    run = runtime_dir(state)
    run.mkdir(parents=True, exist_ok=True)
    if not procs.running("containerd", state):
        procs.start("containerd", ["containerd", "--config", str(_containerd_config(state))], state)
    _wait_for("containerd", lambda: subprocess.run(
        ["ctr", "--address", containerd_address(state), "version"], capture_output=True).returncode == 0, 30)
    load_images(state)
    _apply_addon_objects(admin_kubeconfig, host)
    if not procs.running("kubelet", state):
        procs.start("kubelet", [
            str(bins["kubelet"]), f"--config={_kubelet_config(state, pki, host)}",
            f"--kubeconfig={kcs['kubelet']}", f"--hostname-override={NODE_NAME}", f"--node-ip={host}",
            f"--root-dir={state / 'kubelet'}", f"--cert-dir={state / 'kubelet-pki'}",
            "--node-labels=node.modelyard.io/local=true", "--v=1",
        ], state)
    if not procs.running("kube-proxy", state):
        procs.start("kube-proxy", [str(bins["kube-proxy"]), f"--config={_proxy_config(state, kcs['kube-proxy'])}"],
                    state)
    if not procs.running("coredns", state):
        procs.start("coredns", [str(bins["coredns"]), "-conf", str(_corefile(state, kcs["coredns"]))], state)
    if not procs.running("kwok", state):
        procs.start("kwok", [
            str(bins["kwok"]), f"--kubeconfig={kcs['kwok']}", f"--config={_kwok_config(state)}",
            "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--node-ip={host}", "--node-name=modelyard-kwok", f"--server-address=127.0.0.1:{KWOK_PORT}",
            # The heartbeat-with-lease stage writes node status only every ~10 minutes and
            # counts on the lease; without one the node controller marks the fake nodes
            # NotReady after ~50 s and flips their pods NotReady and back.
            "--node-lease-duration-seconds=40",
        ], state)


KWOK_STAGES = ["node/fast/node-initialize.yaml", "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
               "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml"]


def _kwok_config(state: Path) -> Path:
    """kwok's own stage definitions (node heartbeat with leases, pods Ready at once), read
    from the kwok module it was built from."""
    module_dir = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"],
                                cwd=binaries.LOCAL_DIR / "gomod-addons", capture_output=True, text=True,
                                check=True).stdout.strip()
    stages = [(Path(module_dir) / "kustomize" / "stage" / rel).read_text() for rel in KWOK_STAGES]
    return _write(state / "kwok.yaml", "\n---\n".join(stages))


def load_images(state: Path) -> None:
    """Import images that changed since the last import (pods then run the working tree)."""
    images.load(containerd_address(state), containerd_root() / "imported")


def _wait_for(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start within {timeout:.0f}s")


def _addon_objects(host: str) -> list[dict[str, Any]]:
    """RBAC for CoreDNS and kwok, the kube-dns Service, and the fake GPU nodes."""
    def binding(user: str, role: str) -> dict[str, Any]:
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}

    def role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name}, "rules": rules}

    read = ["get", "list", "watch"]
    objects: list[dict[str, Any]] = [
        role("modelyard-local:coredns", [
            {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]),
        binding("modelyard:coredns", "modelyard-local:coredns"),
        # kwok plays the kubelet of the fake nodes: their status, leases and pods
        role("modelyard-local:kwok", [
            {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": [*read, "patch", "update", "delete"]},
            {"apiGroups": [""], "resources": ["nodes/status", "pods/status"], "verbs": ["patch", "update"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "verbs": [*read, "create", "update", "patch"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}]),
        binding("modelyard:kwok", "modelyard-local:kwok"),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
         "spec": {"clusterIP": CLUSTER_DNS, "ports": [
             {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
             {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}},
        # CoreDNS runs on the host, so its endpoint is the host's pod-network address.
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "kube-dns-host", "namespace": "kube-system",
                      "labels": {"kubernetes.io/service-name": "kube-dns",
                                 "endpointslice.kubernetes.io/managed-by": "localcluster.modelyard.io"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
         "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                   {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]},
    ]
    for name in GPU_NODES:
        objects.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok", GPU_LABEL[0]: GPU_LABEL[1],
                                    "nvidia.com/gpu.product": "Fake-GPU"}},
            "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "32", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "4"},
                       "allocatable": {"cpu": "32", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "4"}},
        })
    return objects


def _apply_addon_objects(kubeconfig: Path, host: str) -> None:
    kubectl = binaries.ensure_k8s()["kubectl"]
    objects = _addon_objects(host)
    apply = [str(kubectl), f"--kubeconfig={kubeconfig}", "apply", "--server-side", "--force-conflicts",
             "--field-manager=modelyard-localcluster", "-f", "-"]
    # A Node's capacity is status: kwok keeps what it finds there (GPUs included).
    nodes = [o for o in objects if o["kind"] == "Node"]
    for cmd, docs in ((apply, objects), ([*apply, "--subresource=status"], nodes)):
        res = subprocess.run(cmd, input=yaml.safe_dump_all(docs), text=True, capture_output=True)
        if res.returncode != 0:
            raise RuntimeError(f"applying the node add-ons failed: {res.stderr}")


def stop(state: Path) -> None:
    for name in COMPONENTS:
        if name == "containerd":
            _remove_pods(state)
        procs.stop(name, state, grace=15)


def _remove_pods(state: Path) -> None:
    """Stop every container of this node so no process, mount or netns outlives the cluster."""
    if not procs.running("containerd", state):
        return
    ctr = ["ctr", "--address", containerd_address(state), "-n", "k8s.io"]
    for cid in subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True).stdout.split():
        subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", cid], capture_output=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and subprocess.run(
            [*ctr, "tasks", "ls", "-q"], capture_output=True, text=True).stdout.strip():
        for cid in subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True).stdout.split():
            subprocess.run([*ctr, "tasks", "delete", "-f", cid], capture_output=True)
        time.sleep(0.2)
    for cid in subprocess.run([*ctr, "containers", "ls", "-q"], capture_output=True, text=True).stdout.split():
        subprocess.run([*ctr, "containers", "delete", cid], capture_output=True)


def _unmount_under(root: Path) -> None:
    prefix = str(root.resolve())
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for target in sorted((m for m in mounts if m == prefix or m.startswith(prefix + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


def teardown_host(state: Path) -> None:
    """Undo every host change the node made (see the module docstring)."""
    bins = binaries.k8s_cache_dir()
    if (bins / "kube-proxy").exists():
        subprocess.run([str(bins / "kube-proxy"), "--cleanup"], capture_output=True)
    _unmount_under(state / "kubelet")
    _unmount_under(runtime_dir(state))
    for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines():
        name = ns.split()[0] if ns.strip() else ""
        if name.startswith("cni-"):
            # only namespaces whose veth sits on our bridge are ours
            links = subprocess.run(["ip", "-n", name, "-o", "addr"], capture_output=True, text=True).stdout
            if f" {network.BRIDGE_IP.rsplit('.', 2)[0]}." in links:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
    # chains the kubelet made (it only makes KUBE-IPTABLES-HINT/KUBE-FIREWALL-style chains)
    for table in ("filter", "nat", "mangle"):
        rules = _iptables("-t", table, "-S").stdout.splitlines()
        for rule in rules:
            if rule.startswith("-A ") and (" -j KUBE-" in rule or f" -j {FORWARD_CHAIN}" in rule):
                _iptables("-t", table, "-D", *rule.split()[1:])
        for rule in rules:
            if rule.startswith("-N KUBE-") or rule == f"-N {FORWARD_CHAIN}":
                chain = rule.split()[1]
                _iptables("-t", table, "-F", chain)
        for rule in rules:
            if rule.startswith("-N KUBE-") or rule == f"-N {FORWARD_CHAIN}":
                _iptables("-t", table, "-X", rule.split()[1])
    saved = state / "host-sysctls.json"
    if saved.exists():
        for key, value in json.loads(saved.read_text()).items():
            with contextlib.suppress(OSError):
                _sysctl(key, value)
        saved.unlink()
    for sub in ("kubelet", "kubelet-pki", "cni"):
        subprocess.run(["rm", "-rf", str(state / sub)], capture_output=True)
    subprocess.run(["rm", "-rf", str(runtime_dir(state))], capture_output=True)
