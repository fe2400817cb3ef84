"""MDRunner: look-again triggers coalesce, and steady resyncs skip the prune lookups."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from modelyard_operator import kube
from modelyard_operator.modeldeployment import reconcile
from modelyard_operator.modeldeployment.models import parse_md
from modelyard_operator.modeldeployment.runner import MDRunner
from modelyard_operator.settings import Settings

KEY = ("ns", "iris")


class CountingRunner(MDRunner):
    def __init__(self) -> None:
        super().__init__(Settings(mlflow_tracking_uri="http://mlflow:5000"), resolver=None)  # type: ignore[arg-type]
        self.runs = 0

    def _run_locked(self, key: Any) -> None:  # type: ignore[override]
        self.runs += 1


def wait_until(check: Any) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_look_again_triggers_coalesce_with_a_waiting_run() -> None:
    runner = CountingRunner()
    busy = runner.lock(KEY)
    busy.acquire()  # a reconcile of KEY is running
    waiting = threading.Thread(target=runner.run, args=(KEY,), kwargs={"coalesce": True})
    waiting.start()
    wait_until(lambda: runner._waiting.get(KEY))
    # A burst of Deployment events while one run waits: each returns at once, none queues.
    assert [runner.run(KEY, coalesce=True) for _ in range(5)] == [None] * 5
    busy.release()
    waiting.join(5)
    assert runner.runs == 1
    assert not runner._waiting


def test_handler_runs_never_coalesce() -> None:
    runner = CountingRunner()
    busy = runner.lock(KEY)
    busy.acquire()
    threads = [threading.Thread(target=runner.run, args=(KEY,)) for _ in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: runner._waiting.get(KEY) == 2)
    busy.release()
    for t in threads:
        t.join(5)
    assert runner.runs == 2  # kopf's create/update handlers want their own outcome


def md(generation: int, observed: int | None) -> Any:
    status = {} if observed is None else {"observedGeneration": observed}
    return parse_md({
        "apiVersion": "modelyard.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ns", "uid": "u", "generation": generation},
        "spec": {"model": {"name": "iris", "alias": "champion"}}, "status": status,
    })


@pytest.mark.parametrize(("generation", "observed", "reads"), [(3, 3, 0), (3, 2, 1), (1, None, 1)])
def test_prune_looks_only_after_a_spec_change(monkeypatch: pytest.MonkeyPatch, generation: int,
                                              observed: int | None, reads: int) -> None:
    calls: list[str] = []
    monkeypatch.setattr(kube, "get", lambda *args: calls.append(args[1]))
    reconcile._prune(md(generation, observed), "policy/v1", "PodDisruptionBudget")
    assert len(calls) == reads


def test_an_event_for_a_deployment_version_already_read_reconciles_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard_operator.events import Outcome
    from modelyard_operator.modeldeployment.controller import MDController

    controller = MDController(Settings(mlflow_tracking_uri="http://mlflow:5000"))
    runs: list[Any] = []
    monkeypatch.setattr(controller, "reconcile_quietly", lambda key, unless_seen=None: runs.append(key))
    steady = md(1, 1)
    controller.runner._publish(steady, Outcome(status=steady.status, deployment_version="7"))
    controller.deployment_changed(KEY, "7")  # the echo of our own apply, or the restart listing
    assert runs == []
    controller.deployment_changed(KEY, "8")  # the deployment controller moved it on
    controller.deployment_changed(("ns", "other"), "7")
    assert runs == [KEY, ("ns", "other")]
    controller.runner.forget(KEY)
    controller.deployment_changed(KEY, "7")
    assert runs[-1] == KEY


def test_the_deployment_event_handler_returns_before_the_reconcile_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf's Deployment event handler only hands the key to the wake pool: it returns while
    the reconcile is still blocked, so kopf's worker drops the event's body at once."""
    import asyncio

    from modelyard_operator.modeldeployment import handlers
    from modelyard_operator.modeldeployment.controller import MDController

    controller = MDController(Settings(mlflow_tracking_uri="http://mlflow:5000"))
    release, seen = threading.Event(), []

    def slow_reconcile(key: Any, unless_seen: str | None = None) -> None:
        release.wait(5)
        seen.append((key, unless_seen))

    monkeypatch.setattr(controller, "reconcile_quietly", slow_reconcile)
    monkeypatch.setitem(handlers._state, "controller", controller)
    labels = {"modelyard.io/modeldeployment": "iris"}
    handler: Any = handlers.serving_deployment_changed  # kopf types it as its own callable
    asyncio.run(handler(namespace="ns", labels=labels, meta={"resourceVersion": "9"}))
    assert seen == []  # returned while the reconcile waits
    release.set()
    wait_until(lambda: seen == [(KEY, "9")])


def test_a_version_read_by_the_run_it_waited_for_is_not_reconciled_again() -> None:
    runner = CountingRunner()
    busy = runner.lock(KEY)
    busy.acquire()  # a resume run is reading the Deployment at version 7
    waiting = threading.Thread(target=runner.run, args=(KEY,),
                               kwargs={"coalesce": True, "unless_seen": "7"})
    waiting.start()  # the listing's event for version 7
    wait_until(lambda: runner._waiting.get(KEY))
    runner._deployment_version[KEY] = "7"  # what the resume run recorded
    busy.release()
    waiting.join(5)
    assert runner.runs == 0


def test_resume_skips_an_md_another_trigger_already_reconciled(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard_operator.events import Outcome
    from modelyard_operator.modeldeployment.controller import MDController

    controller = MDController(Settings(mlflow_tracking_uri="http://mlflow:5000"))
    runs: list[Any] = []
    monkeypatch.setattr(controller, "reconcile", runs.append)
    controller.resume(KEY)
    steady = md(1, 1)
    controller.runner._publish(steady, Outcome(status=steady.status))
    controller.resume(KEY)
    assert runs == [KEY]
