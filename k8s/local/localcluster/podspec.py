"""Turn a pod spec into what a local process needs: argv, environment and bind mounts."""

from __future__ import annotations

import base64
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

# image -> python module run as the container's default entrypoint
COMPONENTS = {
    "modelyard-operator": "modelyard_operator",
    "modelyard-serving": "modelyard_serving",
    "modelyard-training": "modelyard_training",
}
_IMAGE_RE = re.compile(r"(?:^|/)(modelyard-(?:operator|serving|training))(?:[:@].*)?$")
_VAR_RE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The pod cannot start yet (missing Secret/ConfigMap key ...): CreateContainerConfigError."""


def component_for_image(image: str) -> str | None:
    match = _IMAGE_RE.search(image or "")
    return COMPONENTS[match.group(1)] if match else None


@dataclass
class Mount:
    source: Path
    target: str
    read_only: bool = False


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount] = field(default_factory=list)
    workdir: str | None = None


def _expand(value: str, env: dict[str, str]) -> str:
    # Kubernetes $(VAR) expansion; unknown references stay literal, $$( escapes.
    return _VAR_RE.sub(lambda m: env.get(m.group(1), m.group(0)), value.replace("$$(", "\x00(")).replace(
        "\x00(", "$("
    )


class Resolver:
    """Reads Secrets/ConfigMaps/tokens from the apiserver on behalf of one pod."""

    def __init__(self, core: client.CoreV1Api, pod: dict[str, Any], host_ip: str, pod_ip: str,
                 api_host: str, api_port: int) -> None:
        self.core = core
        self.pod = pod
        self.ns = pod["metadata"]["namespace"]
        self.host_ip = host_ip
        self.pod_ip = pod_ip
        self.api_host = api_host
        self.api_port = api_port

    # -- lookups ---------------------------------------------------------------
    def _configmap(self, name: str, optional: bool) -> dict[str, str]:
        try:
            cm = self.core.read_namespaced_config_map(name, self.ns)
        except client.ApiException as exc:
            if exc.status == 404 and optional:
                return {}
            raise ConfigError(f'configmap "{name}" not found') from exc
        data = dict(cm.data or {})
        for key, raw in (cm.binary_data or {}).items():
            data[key] = base64.b64decode(raw).decode("latin-1")
        return data

    def _secret(self, name: str, optional: bool) -> dict[str, bytes]:
        try:
            secret = self.core.read_namespaced_secret(name, self.ns)
        except client.ApiException as exc:
            if exc.status == 404 and optional:
                return {}
            raise ConfigError(f'secret "{name}" not found') from exc
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def field_ref(self, path: str) -> str:
        meta = self.pod["metadata"]
        simple = {
            "metadata.name": meta["name"], "metadata.namespace": self.ns,
            "metadata.uid": meta.get("uid", ""), "spec.nodeName": self.pod["spec"].get("nodeName", ""),
            "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", "default"),
            "status.hostIP": self.host_ip, "status.podIP": self.pod_ip, "status.podIPs": self.pod_ip,
        }
        if path in simple:
            return simple[path]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return (meta.get(match.group(1)) or {}).get(match.group(2), "")
        raise ConfigError(f"unsupported fieldRef {path}")

    # -- env -------------------------------------------------------------------
    def environment(self, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOSTNAME": self.pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": self.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.api_port),
            "PYTHONUNBUFFERED": "1",
        }
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if ref := source.get("configMapRef"):
                for k, v in self._configmap(ref["name"], ref.get("optional", False)).items():
                    env[prefix + k] = v
            if ref := source.get("secretRef"):
                for k, b in self._secret(ref["name"], ref.get("optional", False)).items():
                    env[prefix + k] = b.decode()
        for item in container.get("env") or []:
            env[item["name"]] = self._env_value(item, env)
        return env

    def _env_value(self, item: dict[str, Any], env: dict[str, str]) -> str:
        if "valueFrom" not in item:
            return _expand(item.get("value", ""), env)
        src = item["valueFrom"]
        if ref := src.get("secretKeyRef"):
            data = self._secret(ref["name"], ref.get("optional", False))
            if ref["key"] not in data:
                if ref.get("optional"):
                    return ""
                raise ConfigError(f'couldn\'t find key {ref["key"]} in Secret {self.ns}/{ref["name"]}')
            return data[ref["key"]].decode()
        if ref := src.get("configMapKeyRef"):
            cm = self._configmap(ref["name"], ref.get("optional", False))
            if ref["key"] not in cm:
                if ref.get("optional"):
                    return ""
                raise ConfigError(f'couldn\'t find key {ref["key"]} in ConfigMap {self.ns}/{ref["name"]}')
            return cm[ref["key"]]
        if ref := src.get("fieldRef"):
            return self.field_ref(ref["fieldPath"])
        if ref := src.get("resourceFieldRef"):
            return "1"
        raise ConfigError(f"unsupported valueFrom for {item['name']}")

    # -- command ---------------------------------------------------------------
    def argv(self, container: dict[str, Any], env: dict[str, str]) -> list[str]:
        component = component_for_image(container.get("image", ""))
        command = [_expand(c, env) for c in container.get("command") or []]
        args = [_expand(a, env) for a in container.get("args") or []]
        if not command:
            command = [sys.executable, "-m", component or "unknown"]
        elif command[0] in ("python", "python3", "/usr/local/bin/python", "/usr/bin/python3"):
            command[0] = sys.executable  # the image's python is the dev venv's python
        return command + args

    # -- volumes ---------------------------------------------------------------
    def materialize_volumes(self, root: Path) -> dict[str, Path]:
        """Write every volume's contents under root; returns volume name -> host path."""
        paths: dict[str, Path] = {}
        for vol in self.pod["spec"].get("volumes") or []:
            name = vol["name"]
            target = root / name
            if "hostPath" in vol:
                host = Path(vol["hostPath"]["path"])
                if vol["hostPath"].get("type") in ("DirectoryOrCreate", None, ""):
                    host.mkdir(parents=True, exist_ok=True)
                paths[name] = host
                continue
            target.mkdir(parents=True, exist_ok=True)
            if "persistentVolumeClaim" in vol:
                claim = root.parent.parent.parent / "pvc" / self.ns / vol["persistentVolumeClaim"]["claimName"]
                claim.mkdir(parents=True, exist_ok=True)
                paths[name] = claim
                continue
            if "configMap" in vol:
                src = vol["configMap"]
                self._write_items(target, self._configmap(src["name"], src.get("optional", False)), src)
            elif "secret" in vol:
                src = vol["secret"]
                data = self._secret(src["secretName"], src.get("optional", False))
                self._write_items(target, data, src)
            elif "projected" in vol:
                for source in vol["projected"].get("sources") or []:
                    self._projected(target, source)
            elif "downwardAPI" in vol:
                self._projected(target, {"downwardAPI": vol["downwardAPI"]})
            paths[name] = target
        return paths

    def _write_items(self, target: Path, data: dict[str, Any], src: dict[str, Any]) -> None:
        items = src.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                continue
            dest = target / item["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            value = data[item["key"]]
            dest.write_bytes(value if isinstance(value, bytes) else value.encode())

    def _projected(self, target: Path, source: dict[str, Any]) -> None:
        if tok := source.get("serviceAccountToken"):
            sa = self.pod["spec"].get("serviceAccountName") or "default"
            spec: dict[str, Any] = {
                "expirationSeconds": tok.get("expirationSeconds", 3607),
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                   "name": self.pod["metadata"]["name"], "uid": self.pod["metadata"]["uid"]},
            }
            if tok.get("audience"):
                spec["audiences"] = [tok["audience"]]
            request: Any = {"spec": spec}
            result = self.core.create_namespaced_service_account_token(sa, self.ns, request)
            assert result.status is not None
            (target / tok["path"]).write_text(result.status.token)
        elif src := source.get("configMap"):
            self._write_items(target, self._configmap(src["name"], src.get("optional", False)), src)
        elif src := source.get("secret"):
            self._write_items(target, self._secret(src["name"], src.get("optional", False)), src)
        elif src := source.get("downwardAPI"):
            for item in src.get("items") or []:
                if "fieldRef" in item:
                    (target / item["path"]).write_text(self.field_ref(item["fieldRef"]["fieldPath"]))

    def mounts(self, container: dict[str, Any], volumes: dict[str, Path]) -> list[Mount]:
        result = []
        for vm in container.get("volumeMounts") or []:
            if vm["name"] not in volumes:
                raise ConfigError(f"volumeMount {vm['name']} has no matching volume")
            source = volumes[vm["name"]]
            if vm.get("subPath"):
                source = source / vm["subPath"]
                if not source.exists():
                    source.mkdir(parents=True)
            result.append(Mount(source, vm["mountPath"], bool(vm.get("readOnly"))))
        return result
