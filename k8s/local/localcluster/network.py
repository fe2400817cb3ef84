"""The pod network's host side: one bridge that the CNI bridge plugin attaches pods to.

The bridge owns the first address of the pod CIDR. Host services (apiserver, kubelet, MLflow,
CoreDNS) bind that address, so pods reach them the way they would reach a node IP. The bridge
exists before the first pod does, because the control plane binds its address.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess

BRIDGE = os.environ.get("MODELYARD_BRIDGE", "mybr0")
POD_CIDR = ipaddress.ip_network(os.environ.get("MODELYARD_POD_CIDR", "10.88.0.0/16"))
BRIDGE_IP = str(next(POD_CIDR.hosts()))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def host_ip() -> str:
    """The address host services bind and pods reach. ``MODELYARD_HOST_IP`` moves the services
    that can run without the cluster (MLflow and its stores) elsewhere, e.g. to loopback."""
    return os.environ.get("MODELYARD_HOST_IP") or BRIDGE_IP


def bridge_exists() -> bool:
    return _ip("link", "show", BRIDGE, check=False).returncode == 0


def setup_bridge() -> None:
    if not bridge_exists():
        _ip("link", "add", BRIDGE, "type", "bridge")
    addr = f"{BRIDGE_IP}/{POD_CIDR.prefixlen}"
    if addr not in _ip("addr", "show", BRIDGE).stdout:
        _ip("addr", "add", addr, "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def teardown_bridge() -> None:
    if bridge_exists():
        _ip("link", "del", BRIDGE, check=False)
