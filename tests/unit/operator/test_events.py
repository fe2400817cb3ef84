"""Events are best effort: a refusal never fails a reconcile, and a namespace being deleted is not an error,
for events or for the reconciles of either controller."""

from __future__ import annotations

import logging

import kopf
import pytest
from kubernetes.client.exceptions import ApiException
from modelyard_operator import events, kube
from modelyard_operator.modeldeployment.controller import MDController
from modelyard_operator.settings import Settings
from modelyard_operator.trainingrun import handlers as tr_handlers

INVOLVED = {
    "apiVersion": "modelyard.io/v1alpha1", "kind": "ModelDeployment",
    "metadata": {"name": "iris", "namespace": "team-a", "uid": "u-1"},
}


def _refusal(reason: str) -> ApiException:
    error = ApiException(status=403, reason="Forbidden")
    error.body = (
        '{"kind":"Status","status":"Failure","reason":"Forbidden","details":{"causes":'
        f'[{{"reason":"{reason}"}}]}},"code":403}}'
    )
    return error


def test_event_names_its_object_and_cuts_long_messages() -> None:
    obj = events.event_object(INVOLVED, events.Event("Warning", "Rejected", "x" * 5000), "2026-01-01T00:00:00Z")
    assert obj["involvedObject"]["uid"] == "u-1"
    assert obj["metadata"]["namespace"] == "team-a"
    assert obj["metadata"]["name"].startswith("iris.")
    assert len(obj["message"]) == events.MESSAGE_LIMIT


def test_terminating_namespace_drops_events_quietly(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def refuse(obj: dict, owner: dict | None = None) -> dict:
        calls.append(obj["reason"])
        raise _refusal("NamespaceTerminating")

    monkeypatch.setattr(kube, "create", refuse)
    with caplog.at_level(logging.DEBUG, logger="modelyard_operator.events"):
        events.post(INVOLVED, [events.Event("Normal", "A", "a"), events.Event("Normal", "B", "b")])
    # The namespace is going away: the first refusal stops the loop, and nothing is logged as a warning.
    assert calls == ["A"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_other_refusals_are_logged_but_never_raised(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def refuse(obj: dict, owner: dict | None = None) -> dict:
        raise _refusal("SomethingElse")

    monkeypatch.setattr(kube, "create", refuse)
    with caplog.at_level(logging.WARNING, logger="modelyard_operator.events"):
        events.post(INVOLVED, [events.Event("Warning", "A", "a")])
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert kube.is_namespace_terminating(_refusal("NamespaceTerminating"))
    assert not kube.is_namespace_terminating(_refusal("SomethingElse"))
    assert not kube.is_namespace_terminating(ApiException(status=404))


def _loud(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


@pytest.mark.parametrize("path", ["kopf", "quietly"])
def test_a_modeldeployment_in_a_terminating_namespace_is_left_without_a_traceback(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, path: str) -> None:
    controller = MDController(Settings(mlflow_tracking_uri="http://mlflow:5000"))

    def refuse(key: tuple[str, str], **_: object) -> None:
        raise _refusal("NamespaceTerminating")

    monkeypatch.setattr(controller.runner, "run", refuse)
    with caplog.at_level(logging.DEBUG):
        if path == "kopf":
            controller.reconcile(("team-a", "iris"))  # no retry: the namespace takes the MD with it
        else:
            controller.reconcile_quietly(("team-a", "iris"))
    assert not _loud(caplog)
    assert any("team-a is being deleted" in r.getMessage() for r in caplog.records)


def test_a_real_refusal_of_a_modeldeployment_reconcile_is_still_loud(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    controller = MDController(Settings(mlflow_tracking_uri="http://mlflow:5000"))

    def refuse(key: tuple[str, str], **_: object) -> None:
        raise _refusal("SomethingElse")

    monkeypatch.setattr(controller.runner, "run", refuse)
    with pytest.raises(kopf.TemporaryError):
        controller.reconcile(("team-a", "iris"))
    with caplog.at_level(logging.DEBUG):
        controller.reconcile_quietly(("team-a", "iris"))
    assert [r.exc_info is not None for r in caplog.records if r.levelno >= logging.ERROR] == [True]


@pytest.mark.parametrize(("reason", "retried"), [("NamespaceTerminating", False), ("SomethingElse", True)])
def test_a_trainingrun_sync_refused_for_a_terminating_namespace_is_not_retried(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, reason: str, retried: bool) -> None:
    def refuse(namespace: str, name: str, settings: object) -> None:
        raise _refusal(reason)

    monkeypatch.setattr(tr_handlers, "sync_run", refuse)
    monkeypatch.setattr(tr_handlers, "load_settings", lambda: None)
    with caplog.at_level(logging.DEBUG):
        if retried:
            with pytest.raises(kopf.TemporaryError):
                tr_handlers.reconcile_trainingrun(namespace="team-a", name="run-1")
        else:
            tr_handlers.reconcile_trainingrun(namespace="team-a", name="run-1")
            assert not _loud(caplog)
