"""`make demo`: train, register, deploy, predict, then promote a better model and watch it roll.

Runs on the embedded local cluster by default (starts it, the CRDs and the operator when they
are not running). With ``--cluster kind`` or ``--cluster aks`` it uses the current kube context,
where `make deploy` has installed the chart, and reaches the model server by port-forward.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from . import binaries, cluster, procs

REPO = Path(__file__).resolve().parents[3]
NS = os.environ.get("DEMO_NAMESPACE", "modelyard-demo")
MODEL = os.environ.get("DEMO_MODEL", "iris-demo")
ROW = [[5.9, 3.0, 5.1, 1.8]]


def say(msg: str) -> None:
    print(f"\n\033[1m==> {msg}\033[0m", flush=True)


class Kubectl:
    def __init__(self, binary: str, kubeconfig: str | None) -> None:
        self.base = [binary] + ([f"--kubeconfig={kubeconfig}"] if kubeconfig else [])

    def __call__(self, *args: str, input: str | None = None, show: bool = False, check: bool = True) -> str:
        if show:
            print("$ kubectl " + " ".join(args), flush=True)
        out = subprocess.run([*self.base, *args], input=input, capture_output=True, text=True)
        if check and out.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed:\n{out.stderr}")
        if show:
            print(out.stdout.rstrip(), flush=True)
        return out.stdout


def start_operator(info: cluster.ClusterInfo) -> None:
    if procs.running("operator", info.state):
        return
    secret_file = info.state / "webhook-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(16))
    env = {
        "KUBECONFIG": str(info.kubeconfig), "MODELYARD_MLFLOW_TRACKING_URI": info.mlflow_uri,
        "MODELYARD_WEBHOOK_SECRET": secret_file.read_text(), "MODELYARD_WEBHOOK_REGISTER": "true",
        "MODELYARD_WEBHOOK_URL": f"http://{info.host_ip}:18081/webhooks/mlflow",
        "MODELYARD_WEBHOOK_PORT": "18081", "MODELYARD_METRICS_PORT": "19090", "MODELYARD_HEALTH_PORT": "18080",
        "MODELYARD_POLL_INTERVAL": "10",
        # Only the demo namespace: tests on the same cluster run their own operators.
        "MODELYARD_NAMESPACES": NS,
    }
    procs.start("operator", [sys.executable, "-m", "modelyard_operator"], info.state, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen("http://127.0.0.1:18080/healthz", timeout=1).close()
            print(f"operator running (log: {info.state / 'logs' / 'operator.log'})")
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"operator did not start; see {info.state / 'logs' / 'operator.log'}")


def manifest(path: str, name: str, **spec_overrides: Any) -> str:
    doc = yaml.safe_load((REPO / path).read_text())
    doc["metadata"] = {"name": name, "namespace": NS}
    doc["spec"]["model"]["name"] = MODEL
    doc["spec"].update(spec_overrides)
    return yaml.safe_dump(doc)


def train(kubectl: Kubectl, path: str, name: str, **overrides: Any) -> str:
    kubectl("apply", "-f", "-", input=manifest(path, name, **overrides), show=True)
    kubectl("wait", f"trainingrun/{name}", "-n", NS, "--for=jsonpath={.status.phase}=Succeeded",
            "--timeout=300s", show=True)
    kubectl("get", "trainingruns", "-n", NS, show=True)
    print(f"$ kubectl logs -n {NS} -l modelyard.io/trainingrun={name} --tail=3")
    print(kubectl("logs", "-n", NS, "-l", f"modelyard.io/trainingrun={name}", "--tail=3").rstrip())
    return kubectl("get", f"trainingrun/{name}", "-n", NS, "-o", "jsonpath={.status.modelVersion}")


def ready_pod_ip(kubectl: Kubectl, version: str) -> str:
    pods = json.loads(kubectl("get", "pods", "-n", NS, "-l", "modelyard.io/modeldeployment=iris", "-o", "json"))
    for pod in pods["items"]:
        labels = pod["metadata"].get("labels", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
        if ready and labels.get("modelyard.io/model-version") == version:
            return str(pod["status"]["podIP"])
    raise SystemExit(f"no ready pod serves version {version}")


def predict(kubectl: Kubectl, target: str, version: str) -> dict[str, Any]:
    if target == "local":
        url = f"http://{ready_pod_ip(kubectl, version)}:8080/predict"
    else:
        url = "http://127.0.0.1:18080/predict"
    body = json.dumps({"instances": ROW}).encode()
    print(f"$ curl -s -X POST {url} -H 'content-type: application/json' -d '{json.dumps({'instances': ROW})}'")
    req = urllib.request.Request(url, body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    print(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="modelyard end-to-end demo")
    parser.add_argument("--cluster", default="local", choices=["local", "kind", "aks"])
    args = parser.parse_args()
    if args.cluster == "local":
        say("Starting the embedded local cluster (control plane, local node, MLflow)")
        info = cluster.info() if all(cluster.status().values()) else cluster.up()
        kubectl = Kubectl(str(binaries.ensure_k8s()["kubectl"]), str(info.kubeconfig))
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        start_operator(info)
        print(f"MLflow UI: {info.mlflow_uri}")
    else:
        kubectl = Kubectl(shutil.which("kubectl") or "kubectl", None)
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", "--timeout=120s")
    kubectl("create", "namespace", NS)
    # every pod modelyard creates is admitted under Pod Security "restricted"
    kubectl("label", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted", show=True)

    say("1. Train a logistic regression on iris; promote it to @champion if f1_macro >= 0.8")
    v1 = train(kubectl, "k8s/examples/trainingrun-promotion.yaml", "iris-logreg",
               estimator={"type": "logistic_regression", "hyperparameters": {"C": 0.05, "max_iter": 200}},
               promotion={"alias": "champion", "metric": "f1_macro", "minValue": 0.8})
    say(f"2. Serve {MODEL}@champion (version {v1})")
    md = {"apiVersion": "modelyard.io/v1alpha1", "kind": "ModelDeployment",
          "metadata": {"name": "iris", "namespace": NS},
          "spec": {"model": {"name": MODEL, "alias": "champion"}, "replicas": 1}}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(md), show=True)
    kubectl("wait", "md/iris", "-n", NS, "--for=condition=Ready", "--timeout=180s", show=True)
    kubectl("get", "modeldeployments", "-n", NS, show=True)
    forward = None
    if args.cluster != "local":
        forward = subprocess.Popen([*kubectl.base, "port-forward", "-n", NS, "svc/iris", "18080:80"])
        time.sleep(3)
    try:
        say("3. Predict")
        predict(kubectl, args.cluster, v1)
        say("4. Train a random forest; it clears the bar and takes @champion")
        v2 = train(kubectl, "k8s/examples/trainingrun-promotion.yaml", "iris-rf")
        say(f"5. The registry moved: ModelDeployment rolls from version {v1} to {v2}")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status = json.loads(kubectl("get", "md/iris", "-n", NS, "-o", "json"))["status"]
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
            if status.get("resolvedVersion") == v2 and ready and status.get("updatedReplicas") == 1:
                break
            time.sleep(1)
        kubectl("rollout", "status", "deployment/iris", "-n", NS, "--timeout=180s", show=True)
        kubectl("get", "modeldeployments", "-n", NS, show=True)
        kubectl("rollout", "history", "deployment/iris", "-n", NS, show=True)
        kubectl("get", "events", "-n", NS, "--field-selector=involvedObject.kind=ModelDeployment", show=True)
        say("6. Predict again: the new version answers")
        result = predict(kubectl, args.cluster, v2)
        if str(result.get("model_version", result.get("modelVersion"))) != str(v2):
            raise SystemExit(f"expected version {v2} to serve, got {result}")
        say("Done. The MLflow UI shows both runs, their metrics and plots, and the alias history.")
    finally:
        if forward:
            forward.terminate()


if __name__ == "__main__":
    main()
