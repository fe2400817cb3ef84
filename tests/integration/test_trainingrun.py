"""TrainingRun end to end: real API server, local node running the training image, real MLflow.

Each test uses its own namespace and its own registered-model name, so the shared MLflow
server never mixes versions between tests.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from modelyard_operator.trainingrun.handlers import POLL_SECONDS

from tests.helpers import condition, event_reasons, kubectl_apply, mlflow_client, version_artifact_location, wait_for

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "modelyard.io", "v1alpha1", "trainingruns"
RUN_TIMEOUT = 300  # a cold sklearn+mlflow import on 2 cores, plus MLflow logging


# -- helpers (imported by test_trainingrun_failures.py) ------------------------------------

def tr_manifest(name: str, model: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"name": model},
        "estimator": {"type": "logistic_regression", "hyperparameters": {"max_iter": 500}},
        "dataset": {"builtin": "iris"},
    }
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": {"name": name},
            "spec": {**base, **spec}}


def get_run(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    objects = client.CustomObjectsApi(cluster.api)
    result: Any = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return dict(result)


def wait_phase(cluster: Any, namespace: str, name: str, phases: tuple[str, ...] = ("Succeeded", "Failed"),
               timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = get_run(cluster, namespace, name)
        return run if (run.get("status") or {}).get("phase") in phases else None
    try:
        return wait_for(done, timeout, interval=0.5, what=f"TrainingRun {name} in {phases}")
    except AssertionError:
        run = get_run(cluster, namespace, name)
        raise AssertionError(f"{name} stuck: {run.get('status')}") from None


def jobs_of(cluster: Any, namespace: str, name: str) -> list[Any]:
    batch = client.BatchV1Api(cluster.api)
    return list(batch.list_namespaced_job(namespace, label_selector=f"modelyard.io/trainingrun={name}").items)


def pods_of(cluster: Any, namespace: str, name: str) -> list[Any]:
    core = client.CoreV1Api(cluster.api)
    return list(core.list_namespaced_pod(namespace, label_selector=f"modelyard.io/trainingrun={name}").items)


def delete_run_and_pods(cluster: Any, namespace: str, name: str) -> None:
    """Delete a run whose pods never ran on the real node (unscheduled, or on a kwok node):
    such pods never finish graceful deletion, so they are removed outright."""
    core = client.CoreV1Api(cluster.api)
    client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    for pod in pods_of(cluster, namespace, name):
        try:
            core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
        except client.ApiException as error:
            if error.status != 404:  # already collected through the Job
                raise


def model_name(namespace: str, stem: str) -> str:
    return f"{stem}-{namespace}"


# -- tests ---------------------------------------------------------------------------------

@pytest.mark.mlflow_backend
def test_iris_run_succeeds_and_registers_version_1(
    cluster: Any, namespace: str, operator: Any, record_property: Any,
) -> None:
    model = model_name(namespace, "iris")
    started = time.monotonic()
    kubectl_apply(cluster, namespace, tr_manifest("iris", model))
    created = time.monotonic()  # the TrainingRun exists once kubectl returns
    wait_for(lambda: jobs_of(cluster, namespace, "iris"), 30, interval=0.02, what="training Job")
    job_latency = time.monotonic() - created

    run = wait_phase(cluster, namespace, "iris")
    wall_time = time.monotonic() - started
    record_property("apply_to_job_created_seconds", round(job_latency, 3))
    record_property("iris_run_wall_seconds", round(wall_time, 1))
    print(f"\nTrainingRun created -> Job created: {job_latency:.3f}s "
          f"(kubectl apply itself {created - started:.2f}s); iris run wall time: {wall_time:.1f}s")

    status = run["status"]
    assert status["phase"] == "Succeeded", status
    assert status["modelVersion"] == "1"
    assert status["observedGeneration"] == run["metadata"]["generation"]
    assert condition(run, "Succeeded")["status"] == "True"
    assert condition(run, "Failed")["status"] == "False"
    assert status["jobName"] == "iris-train"
    assert status["startTime"] and status["completionTime"]
    assert status["objectiveMetric"] == "accuracy" and status["objectiveValue"] > 0.8
    for metric in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
        assert 0.0 <= status["metrics"][metric] <= 1.0

    mlf = mlflow_client(cluster)
    version = mlf.get_model_version(model, "1")
    assert version.run_id == status["runId"]
    assert version.tags["modelyard.io/trainingrun"] == "iris"
    assert version.tags["modelyard.io/namespace"] == namespace
    assert version.tags["modelyard.io/trainingrun-uid"] == run["metadata"]["uid"]
    logged = mlf.get_run(status["runId"]).data.metrics
    assert logged["accuracy"] == pytest.approx(status["metrics"]["accuracy"])
    # The pod uploaded through MLflow's artifact proxy: no store URI, no store keys in the pod.
    assert version_artifact_location(mlf, model, "1").startswith("mlflow-artifacts:/")
    (train_pod,) = pods_of(cluster, namespace, "iris")
    assert not [e.name for e in train_pod.spec.containers[0].env or [] if e.name.startswith("AWS_")]
    assert mlf.get_run(status["runId"]).info.experiment_id == status["experimentId"]

    (job,) = jobs_of(cluster, namespace, "iris")
    (owner,) = job.metadata.owner_references
    assert (owner.kind, owner.name, owner.controller) == ("TrainingRun", "iris", True)
    assert owner.uid == run["metadata"]["uid"]
    assert job.metadata.labels["app.kubernetes.io/managed-by"] == "modelyard"
    assert len(pods_of(cluster, namespace, "iris")) == 1
    wait_for(lambda: {"Started", "Succeeded"} <= event_reasons(cluster, namespace, "iris", "TrainingRun"), 15,
             what="events")

    table = cluster.kubectl("get", "trainingruns", "-n", namespace).stdout
    assert "Succeeded" in table and model in table, table


def test_promotion_rule_pass_sets_alias_and_fail_does_not(cluster: Any, namespace: str, operator: Any) -> None:
    model = model_name(namespace, "promo")
    passing = {"alias": "champion", "metric": "accuracy", "minValue": 0.5}
    failing = {"alias": "challenger", "metric": "accuracy", "minValue": 1.01}
    kubectl_apply(cluster, namespace, tr_manifest("pass", model, promotion=passing))
    first = wait_phase(cluster, namespace, "pass")["status"]
    kubectl_apply(cluster, namespace, tr_manifest("fail", model, promotion=failing))
    second = wait_phase(cluster, namespace, "fail")["status"]

    assert first["phase"] == second["phase"] == "Succeeded", (first, second)
    assert (first["promoted"], first["alias"]) == (True, "champion")
    assert second["promoted"] is False and "alias" not in second
    assert "not met" in second["message"]
    mlf = mlflow_client(cluster)
    assert mlf.get_model_version_by_alias(model, "champion").version == first["modelVersion"]
    assert "challenger" not in mlf.get_registered_model(model).aliases
    wait_for(lambda: "Promoted" in event_reasons(cluster, namespace, "pass", "TrainingRun"), 15, what="Promoted event")
    assert "Promoted" not in event_reasons(cluster, namespace, "fail", "TrainingRun")


def test_sweep_registers_exactly_one_version_the_best(cluster: Any, namespace: str, operator: Any) -> None:
    model = model_name(namespace, "sweep")
    sweep = {"trials": 4, "parallelism": 2, "strategy": "grid",
             "space": {"C": {"values": [0.001, 0.01, 0.1, 10.0]}},
             "objective": {"metric": "accuracy", "direction": "maximize"}}
    kubectl_apply(cluster, namespace, tr_manifest("sweep", model, sweep=sweep))
    wait_for(lambda: [j for j in jobs_of(cluster, namespace, "sweep") if j.spec.completion_mode == "Indexed"],
             30, what="Indexed sweep Job")
    run = wait_phase(cluster, namespace, "sweep", timeout=RUN_TIMEOUT * 2)
    status = run["status"]
    assert status["phase"] == "Succeeded", status
    assert len(status["trialRunIds"]) == 4
    assert status["jobName"] == "sweep-select"

    mlf = mlflow_client(cluster)
    versions = mlf.search_model_versions(f"name='{model}'")
    assert [v.version for v in versions] == ["1"], "exactly one version for the whole sweep"
    trial_scores = {rid: mlf.get_run(rid).data.metrics["accuracy"] for rid in status["trialRunIds"]}
    assert versions[0].run_id == status["runId"] in trial_scores
    assert trial_scores[status["runId"]] == max(trial_scores.values())
    assert status["objectiveValue"] == pytest.approx(max(trial_scores.values()), abs=1e-4)
    sweep_job = next(j for j in jobs_of(cluster, namespace, "sweep") if j.metadata.name == "sweep-sweep")
    assert (sweep_job.spec.completions, sweep_job.spec.parallelism) == (4, 2)


def test_gpu_run_pod_binds_to_a_fake_gpu_node(cluster: Any, namespace: str, operator: Any) -> None:
    core = client.CoreV1Api(cluster.api)
    kubectl_apply(cluster, namespace, tr_manifest("gpu", model_name(namespace, "gpu"), resources={"gpu": 1}))

    def bound() -> str | None:
        pods = pods_of(cluster, namespace, "gpu")
        return pods[0].spec.node_name if pods and pods[0].spec.node_name else None

    try:
        node_name = wait_for(bound, 60, what="GPU pod bound to a node")
        node: Any = core.read_node(node_name)
        assert node.metadata.labels.get("nvidia.com/gpu.present") == "true"
        assert node.status.capacity.get("nvidia.com/gpu")
        (pod,) = pods_of(cluster, namespace, "gpu")
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
        # Fake GPU nodes run nothing, so the run waits; that is expected here.
        assert get_run(cluster, namespace, "gpu")["status"]["phase"] in ("Pending", "Running")
    finally:
        delete_run_and_pods(cluster, namespace, "gpu")


def test_run_status_follows_its_pod_without_waiting_for_the_poll(
    cluster: Any, namespace: str, operator: Any
) -> None:
    """A pod that cannot be scheduled changes no Job field; the run still says why it waits,
    well within the fallback poll's interval, because the operator watches its pods too."""
    # More GPUs than any (fake) node has: the scheduler keeps the pod Pending, Unschedulable.
    manifest = tr_manifest("nofit", model_name(namespace, "nofit"), resources={"gpu": 16})
    kubectl_apply(cluster, namespace, manifest)

    def says_unschedulable() -> str | None:
        message = str((get_run(cluster, namespace, "nofit").get("status") or {}).get("message") or "")
        return message if message.startswith("Unschedulable") else None

    try:
        message = wait_for(says_unschedulable, POLL_SECONDS / 2, interval=0.25, what="status names Unschedulable")
        assert "nvidia.com/gpu" in message, message
        assert get_run(cluster, namespace, "nofit")["status"]["phase"] == "Pending"
    finally:
        delete_run_and_pods(cluster, namespace, "nofit")


def test_operator_restart_mid_run_creates_no_duplicate_job(cluster: Any, namespace: str, operator: Any) -> None:
    model = model_name(namespace, "restart")
    kubectl_apply(cluster, namespace, tr_manifest("restart", model))
    (job,) = wait_for(lambda: jobs_of(cluster, namespace, "restart"), 30, what="training Job")
    operator.restart()
    run = wait_phase(cluster, namespace, "restart")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    (after,) = jobs_of(cluster, namespace, "restart")
    assert after.metadata.uid == job.metadata.uid
    assert [v.version for v in mlflow_client(cluster).search_model_versions(f"name='{model}'")] == ["1"]


def test_run_created_while_operator_down_starts_on_resume(cluster: Any, namespace: str, operator: Any) -> None:
    operator.stop()
    try:
        kubectl_apply(cluster, namespace, tr_manifest("offline", model_name(namespace, "offline")))
        time.sleep(1)
        assert not jobs_of(cluster, namespace, "offline")
    finally:
        operator.start(**operator.extra_env)
    wait_for(lambda: jobs_of(cluster, namespace, "offline"), 60, what="Job after operator start")
    assert wait_phase(cluster, namespace, "offline")["status"]["phase"] == "Succeeded"


def test_deleting_a_run_deletes_its_job_and_pods_but_keeps_mlflow_history(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    model = model_name(namespace, "gone")
    kubectl_apply(cluster, namespace, tr_manifest("gone", model))
    run = wait_phase(cluster, namespace, "gone")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert jobs_of(cluster, namespace, "gone") and pods_of(cluster, namespace, "gone")

    cluster.kubectl("delete", "trainingrun", "gone", "-n", namespace, "--wait=true")
    wait_for(lambda: not jobs_of(cluster, namespace, "gone"), 60, what="Job garbage-collected")
    wait_for(lambda: not pods_of(cluster, namespace, "gone"), 60, what="pods garbage-collected")
    assert mlflow_client(cluster).get_model_version(model, "1").run_id == run["status"]["runId"]
