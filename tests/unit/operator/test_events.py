"""Events are best effort: a refusal never fails a reconcile, and a namespace being deleted is not an error."""

from __future__ import annotations

import logging

import pytest
from kubernetes.client.exceptions import ApiException
from modelyard_operator import events, kube

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
