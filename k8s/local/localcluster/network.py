"""Pod networking for the local node: one network namespace per pod on a host bridge.

The bridge owns the first address of the pod CIDR; that address is also where the host-side
services (apiserver, MLflow) listen, so pods reach them the way they would reach a node IP.
IP forwarding stays off, so pod traffic can only ever reach this host and other pods.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import uuid

BRIDGE = os.environ.get("MODELYARD_BRIDGE", "mybr0")
POD_CIDR = ipaddress.ip_network(os.environ.get("MODELYARD_POD_CIDR", "10.88.0.0/16"))
BRIDGE_IP = str(next(POD_CIDR.hosts()))
NETNS_PREFIX = f"{BRIDGE}-"  # per bridge, so two local clusters never touch each other's pods


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def netns_available() -> bool:
    """True when this process may create network namespaces (root with iproute2)."""
    if os.environ.get("MODELYARD_NO_NETNS"):
        return False
    probe = f"myprobe{uuid.uuid4().hex[:6]}"
    try:
        if _ip("netns", "add", probe, check=False).returncode != 0:
            return False
        _ip("netns", "del", probe, check=False)
        return True
    except FileNotFoundError:
        return False


def host_ip() -> str:
    """The address host services bind and pods reach: the bridge, or loopback without netns."""
    return BRIDGE_IP if bridge_exists() else "127.0.0.1"


def bridge_exists() -> bool:
    try:
        return _ip("link", "show", BRIDGE, check=False).returncode == 0
    except FileNotFoundError:
        return False


def setup_bridge() -> None:
    if not bridge_exists():
        _ip("link", "add", BRIDGE, "type", "bridge")
    addr = f"{BRIDGE_IP}/{POD_CIDR.prefixlen}"
    if addr not in _ip("addr", "show", BRIDGE).stdout:
        _ip("addr", "add", addr, "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def teardown_bridge() -> None:
    for ns in _ip("netns", "list", check=False).stdout.splitlines():
        name = ns.split()[0] if ns.strip() else ""
        if name.startswith(NETNS_PREFIX):
            _ip("netns", "del", name, check=False)
    if bridge_exists():
        _ip("link", "del", BRIDGE, check=False)


def create_pod_netns(key: str, address: str) -> str:
    """Create ``<bridge>-<key>`` with eth0=address, wired to the bridge. Idempotent."""
    ns = f"{NETNS_PREFIX}{key}"
    host_if = f"myv{key}"[:15]
    delete_pod_netns(ns)
    _ip("netns", "add", ns)
    _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("link", "set", host_if, "master", BRIDGE, "up")
    _ip("-n", ns, "addr", "add", f"{address}/{POD_CIDR.prefixlen}", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", ns, "route", "add", "default", "via", BRIDGE_IP)
    return ns


def delete_pod_netns(ns: str) -> None:
    # Deleting the namespace destroys its veth end, which removes the host end too.
    _ip("netns", "del", ns, check=False)


class IPAllocator:
    """Hands out pod addresses; the node re-seeds it from existing pods on restart."""

    def __init__(self) -> None:
        hosts = POD_CIDR.hosts()
        next(hosts)  # the bridge
        self._free = (str(h) for h in hosts)
        self._released: list[str] = []
        self._used: set[str] = set()

    def reserve(self, address: str) -> None:
        self._used.add(address)

    def allocate(self) -> str:
        while self._released:
            candidate = self._released.pop()
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate
        for candidate in self._free:
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate
        raise RuntimeError(f"pod CIDR {POD_CIDR} exhausted")

    def release(self, address: str) -> None:
        if address in self._used:
            self._used.discard(address)
            self._released.insert(0, address)
