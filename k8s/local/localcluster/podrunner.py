"""One thread per pod: start its containers as local processes and report their state."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client

from . import network
from .podspec import ConfigError, Resolver, component_for_image

if TYPE_CHECKING:
    from .node import LocalNode

log = logging.getLogger("localnode")
LOCAL_DIR = Path(__file__).resolve().parent.parent
MAX_MESSAGE = 4096


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Probe:
    spec: dict[str, Any]
    successes: int = 0
    failures: int = 0
    next_at: float = 0.0
    ok: bool = False


@dataclass
class Container:
    spec: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    restarts: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    readiness: Probe | None = None
    liveness: Probe | None = None
    restart_at: float | None = None
    done: bool = False

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def ready(self) -> bool:
        running = "running" in self.state
        return running and (self.readiness is None or self.readiness.ok)


class PodWorker(threading.Thread):
    def __init__(self, node: LocalNode, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.node = node
        self.pod = pod
        self.uid: str = meta["uid"]
        self.stop_requested = threading.Event()
        self.grace = 30
        self.dir = node.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid[:8]}"
        self.pod_ip = ""
        self.netns: str | None = None
        self.containers: list[Container] = []
        self.phase = "Pending"
        self._last_status: str | None = None
        self.start_time = now()

    # -- public ------------------------------------------------------------------
    def request_stop(self, grace: int) -> None:
        self.grace = max(0, grace)
        self.stop_requested.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s failed in the local node", self.pod_key)
        finally:
            self._cleanup()

    @property
    def pod_key(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    # -- lifecycle ---------------------------------------------------------------
    def _run(self) -> None:
        spec = self.pod["spec"]
        unsupported = [c["image"] for c in spec["containers"] + (spec.get("initContainers") or [])
                       if component_for_image(c.get("image", "")) is None]
        if unsupported:
            msg = (f"image {unsupported[0]!r} cannot run on the modelyard local node: only "
                   "modelyard-operator, modelyard-serving and modelyard-training images are mapped to "
                   "local entrypoints")
            self.node.event(self.pod, "Warning", "ImageNotSupported", msg)
            self._patch_waiting("ImageNotSupported", msg)
            self.stop_requested.wait()
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._setup_network()
        resolver = Resolver(self.node.core, self.pod, self.node.host_ip, self.pod_ip,
                            self.node.api_host, self.node.api_port)
        volumes = self._wait_for_config(lambda: resolver.materialize_volumes(self.dir / "volumes"))
        if volumes is None:
            return
        for init in spec.get("initContainers") or []:
            if not self._run_init(init, resolver, volumes):
                return
        self.containers = [Container(c) for c in spec["containers"]]
        for c in self.containers:
            if p := c.spec.get("readinessProbe"):
                c.readiness = Probe(p, next_at=time.monotonic() + p.get("initialDelaySeconds", 0))
            if p := c.spec.get("livenessProbe"):
                c.liveness = Probe(p, next_at=time.monotonic() + p.get("initialDelaySeconds", 0))
            if not self._start(c, resolver, volumes):
                return
        self.phase = "Running"
        self._loop(resolver, volumes)

    def _wait_for_config(self, fn: Any) -> Any:
        warned = False
        while not self.stop_requested.is_set():
            try:
                return fn()
            except ConfigError as exc:
                if not warned:
                    self.node.event(self.pod, "Warning", "Failed", f"Error: {exc}")
                    self._patch_waiting("CreateContainerConfigError", str(exc))
                    warned = True
                self.stop_requested.wait(2)
        return None

    def _setup_network(self) -> None:
        if self.pod["spec"].get("hostNetwork") or not self.node.netns:
            self.pod_ip = self.node.host_ip
            return
        self.pod_ip = self.node.ips.allocate()
        self.netns = network.create_pod_netns(self.uid.replace("-", "")[:10], self.pod_ip)

    def _launch_spec(self, c: dict[str, Any], resolver: Resolver, volumes: dict[str, Path]) -> Path:
        env = resolver.environment(c)
        mounts = resolver.mounts(c, volumes)
        term = self.dir / f"{c['name']}.termination-log"
        term.write_text("")
        spec = {
            "argv": resolver.argv(c, env),
            "env": env,
            "workdir": c.get("workingDir"),
            "mounts": [{"source": str(m.source), "target": m.target, "readOnly": m.read_only} for m in mounts]
            + [{"source": str(term), "target": c.get("terminationMessagePath") or "/dev/termination-log"}],
        }
        path = self.dir / f"{c['name']}.launch.json"
        path.write_text(json.dumps(spec))
        return path

    def _popen(self, launch: Path, logfile: Path) -> subprocess.Popen[bytes]:
        shim = [sys.executable, "-m", "localcluster.shim", str(launch)]
        argv = ["ip", "netns", "exec", self.netns, *shim] if self.netns else \
            ["unshare", "-m", "--propagation", "private", *shim]
        out = logfile.open("ab")
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(LOCAL_DIR)}
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def _start(self, c: Container, resolver: Resolver, volumes: dict[str, Path]) -> bool:
        launch = self._wait_for_config(lambda: self._launch_spec(c.spec, resolver, volumes))
        if launch is None:
            return False
        c.proc = self._popen(launch, self.dir / f"{c.name}.log")
        c.started_at = now()
        c.state = {"running": {"startedAt": c.started_at}}
        c.restart_at = None
        for probe in (c.readiness, c.liveness):
            if probe:
                probe.ok, probe.successes, probe.failures = False, 0, 0
                probe.next_at = time.monotonic() + probe.spec.get("initialDelaySeconds", 0)
        self.node.event(self.pod, "Normal", "Started", f"Started container {c.name} (pid {c.proc.pid})")
        self._report()
        return True

    def _run_init(self, spec: dict[str, Any], resolver: Resolver, volumes: dict[str, Path]) -> bool:
        c = Container(spec)
        if not self._start(c, resolver, volumes):
            return False
        assert c.proc is not None
        while c.proc.poll() is None:
            if self.stop_requested.wait(0.2):
                return False
        if c.proc.returncode != 0:
            self.phase = "Failed"
            self.containers = [c]
            self._finish_container(c)
            self._report()
            return False
        return True

    def _loop(self, resolver: Resolver, volumes: dict[str, Path]) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while not self.stop_requested.wait(0.2):
            for c in self.containers:
                if c.proc is not None and c.proc.poll() is not None and "running" in c.state:
                    self._finish_container(c)
                    failed = c.proc.returncode != 0
                    if policy == "Always" or (policy == "OnFailure" and failed):
                        delay = min(30.0, 1.0 * 2 ** min(c.restarts, 5))
                        c.restart_at = time.monotonic() + delay
                        c.state = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                               f"back-off {delay:.0f}s restarting failed container"}}
                    else:
                        c.done = True
                if c.restart_at is not None and time.monotonic() >= c.restart_at:
                    c.restarts += 1
                    c.last_state = {"terminated": c.state.get("terminated") or c.last_state.get("terminated", {})}
                    self._start(c, resolver, volumes)
                self._probe(c)
            if all(c.done for c in self.containers):
                codes = [c.proc.returncode for c in self.containers if c.proc]
                self.phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
                self._report()
                return
            self._report()

    def _finish_container(self, c: Container) -> None:
        assert c.proc is not None
        code = c.proc.returncode
        code = 128 - code if code < 0 else code  # killed by signal N -> 128+N, like a runtime
        message = (self.dir / f"{c.name}.termination-log").read_text(errors="replace")[:MAX_MESSAGE]
        if not message and code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            tail = (self.dir / f"{c.name}.log").read_bytes()[-2048:]
            message = tail.decode(errors="replace")
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                      "startedAt": c.started_at, "finishedAt": now(), "containerID": f"local://{c.proc.pid}"}
        if message:
            terminated["message"] = message
        if c.restart_at is None:
            c.state = {"terminated": terminated}
        c.last_state = {"terminated": terminated}

    # -- probes ------------------------------------------------------------------
    def _probe(self, c: Container) -> None:
        if "running" not in c.state:
            return
        for probe, kind in ((c.readiness, "readiness"), (c.liveness, "liveness")):
            if probe is None or time.monotonic() < probe.next_at:
                continue
            probe.next_at = time.monotonic() + probe.spec.get("periodSeconds", 10)
            ok = self._check(c, probe.spec)
            if ok:
                probe.successes, probe.failures = probe.successes + 1, 0
                if probe.successes >= probe.spec.get("successThreshold", 1):
                    probe.ok = True
            else:
                probe.successes, probe.failures = 0, probe.failures + 1
                if probe.failures >= probe.spec.get("failureThreshold", 3):
                    probe.ok = False
                    if kind == "liveness":
                        self.node.event(self.pod, "Warning", "Unhealthy",
                                        f"Liveness probe failed for {c.name}; restarting")
                        self._kill(c, self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def _check(self, c: Container, spec: dict[str, Any]) -> bool:
        timeout = spec.get("timeoutSeconds", 1)
        host = self.pod_ip
        if http := spec.get("httpGet"):
            port = self._port(c, http["port"])
            url = f"http://{http.get('host') or host}:{port}{http.get('path', '/')}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    return 200 <= resp.status < 400
            except Exception:  # noqa: BLE001 - any failure is a failed probe
                return False
        if tcp := spec.get("tcpSocket"):
            try:
                socket.create_connection((host, self._port(c, tcp["port"])), timeout=timeout).close()
                return True
            except OSError:
                return False
        return True  # exec probes are not supported locally; treat them as passing

    @staticmethod
    def _port(c: Container, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"unknown named port {port}")

    # -- stopping ----------------------------------------------------------------
    def _kill(self, c: Container, grace: int) -> None:
        proc = c.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def _cleanup(self) -> None:
        for c in self.containers:
            self._kill(c, self.grace)
        if self.netns:
            network.delete_pod_netns(self.netns)
            self.netns = None
        if self.pod_ip and self.pod_ip != self.node.host_ip:
            self.node.ips.release(self.pod_ip)
        if self.stop_requested.is_set():
            self.node.finalize_deletion(self.pod)

    # -- status ------------------------------------------------------------------
    def _patch_waiting(self, reason: str, message: str) -> None:
        statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                     "restartCount": 0, "started": False, "state": {"waiting": {"reason": reason, "message": message}}}
                    for c in self.pod["spec"]["containers"]]
        self._patch({"phase": "Pending", "hostIP": self.node.host_ip, "containerStatuses": statuses,
                     "conditions": self._conditions(False)})

    def _conditions(self, ready: bool, initialized: bool = True) -> list[dict[str, Any]]:
        existing = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or []}
        out = [existing["PodScheduled"]] if "PodScheduled" in existing else []
        for ctype, value in (("PodReadyToStartContainers", bool(self.pod_ip)), ("Initialized", initialized),
                             ("ContainersReady", ready), ("Ready", ready)):
            status = "True" if value else "False"
            prev = existing.get(ctype)
            stamp = prev["lastTransitionTime"] if prev and prev.get("status") == status else now()
            out.append({"type": ctype, "status": status, "lastTransitionTime": stamp, "lastProbeTime": None})
        return out

    def _report(self) -> None:
        statuses = []
        for c in self.containers:
            s: dict[str, Any] = {"name": c.name, "image": c.spec["image"], "imageID": "",
                                 "containerID": f"local://{c.proc.pid}" if c.proc else "", "ready": c.ready,
                                 "started": "running" in c.state, "restartCount": c.restarts, "state": c.state}
            if c.last_state and c.restarts:
                s["lastState"] = c.last_state
            statuses.append(s)
        ready = bool(self.containers) and all(c.ready for c in self.containers) and self.phase == "Running"
        status: dict[str, Any] = {"phase": self.phase, "hostIP": self.node.host_ip, "containerStatuses": statuses,
                                  "conditions": self._conditions(ready)}
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
            status["hostIPs"] = [{"ip": self.node.host_ip}]
        status["startTime"] = (self.pod.get("status") or {}).get("startTime") or self.start_time
        comparable = json.dumps({**status, "conditions": [(c["type"], c["status"]) for c in status["conditions"]]},
                                sort_keys=True)
        if comparable != self._last_status:
            self._patch(status)
            self._last_status = comparable

    def _patch(self, status: dict[str, Any]) -> None:
        meta = self.pod["metadata"]
        try:
            updated = self.node.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})
            self.pod["status"] = client.ApiClient().sanitize_for_serialization(updated.status)
        except client.ApiException as exc:
            if exc.status != 404:
                log.warning("status patch for %s failed: %s", self.pod_key, exc.reason)
