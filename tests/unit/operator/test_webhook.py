"""Webhook signature verification (against MLflow's own signer) and the aiohttp receiver."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from mlflow.webhooks.delivery import _generate_hmac_signature
from modelyard_operator import metrics
from modelyard_operator.modeldeployment.controller import MDController
from modelyard_operator.modeldeployment.webhook import ReplayGuard, WebhookReceiver, parse_event, sign, verify
from modelyard_operator.settings import Settings
from pydantic import ValidationError

SECRET = "s3cret-value"
BODY = json.dumps({
    "entity": "model_version_alias", "action": "created", "timestamp": "2026-01-01T00:00:00",
    "data": {"name": "iris", "alias": "champion", "version": "2"},
}).encode()


def signed_headers(body: bytes = BODY, secret: str = SECRET, ts: int | None = None,
                   delivery: str = "d-1") -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return {
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": stamp,
        # MLflow's own signer: the receiver must accept exactly what MLflow sends.
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery, stamp, body.decode()),
    }


def test_our_signer_matches_mlflows() -> None:
    assert sign(SECRET, "d-9", "1700000000", BODY) == _generate_hmac_signature(
        SECRET, "d-9", "1700000000", BODY.decode())


def test_valid_delivery_verifies() -> None:
    assert verify(SECRET, signed_headers(), BODY).ok


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda h, b: ({k: v for k, v in h.items() if k != "X-MLflow-Signature"}, b), "missing"),
    (lambda h, b: ({k: v for k, v in h.items() if k != "X-MLflow-Timestamp"}, b), "missing"),
    (lambda h, b: ({k: v for k, v in h.items() if k != "X-MLflow-Delivery-Id"}, b), "missing"),
    (lambda h, b: (h, b.replace(b"champion", b"attacker")), "mismatch"),
    (lambda h, b: ({**h, "X-MLflow-Delivery-Id": "d-2"}, b), "mismatch"),
    (lambda h, b: ({**h, "X-MLflow-Signature": "v1,AAAA"}, b), "mismatch"),
    (lambda h, b: ({**h, "X-MLflow-Timestamp": "soon"}, b), "malformed"),
])
def test_tampered_or_incomplete_deliveries_are_rejected(mutate: Any, reason: str) -> None:
    headers, body = mutate(signed_headers(), BODY)
    result = verify(SECRET, headers, body)
    assert not result.ok and reason in result.reason


def test_wrong_secret_rejected() -> None:
    assert not verify(SECRET, signed_headers(secret="other"), BODY).ok


@pytest.mark.parametrize("age", [301, -301, 86400])
def test_stale_or_future_timestamps_rejected(age: int) -> None:
    now = time.time()
    result = verify(SECRET, signed_headers(ts=int(now - age)), BODY, now=now)
    assert not result.ok and "window" in result.reason


def test_rotation_accepts_any_of_several_signatures() -> None:
    headers = signed_headers()
    headers["X-MLflow-Signature"] = "v1,b2xk " + headers["X-MLflow-Signature"]
    assert verify(SECRET, headers, BODY).ok


def test_parse_event() -> None:
    assert parse_event(BODY) == ("model_version_alias.created", "iris")
    assert parse_event(b"not json") == ("invalid", None)
    assert parse_event(b'{"entity": "x"}') == ("invalid", None)


class RecordingWatcher:
    def __init__(self) -> None:
        self.models: list[str] = []

    async def notify(self, name: str) -> list[tuple[str, str]]:
        self.models.append(name)
        return []


def _count(event: str, verified: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "modelyard_operator_webhook_events_total", {"event": event, "verified": verified})
    return value or 0.0


async def _post_all(receiver: WebhookReceiver, *requests: tuple[dict[str, str], bytes]) -> list[int]:
    statuses = []
    async with TestClient(TestServer(receiver.app)) as client:
        for headers, body in requests:
            response = await client.post("/webhooks/mlflow", data=body, headers=headers)
            statuses.append(response.status)
        await asyncio.sleep(0.05)  # let the background notify tasks run
    return statuses


def _post(receiver: WebhookReceiver, headers: dict[str, str], body: bytes) -> int:
    return asyncio.run(_post_all(receiver, (headers, body)))[0]


def test_receiver_accepts_signed_event_and_notifies_watcher() -> None:
    watcher = RecordingWatcher()
    receiver = WebhookReceiver(watcher, SECRET)
    before = _count("model_version_alias.created", "true")
    assert _post(receiver, signed_headers(), BODY) == 200
    assert watcher.models == ["iris"]
    assert _count("model_version_alias.created", "true") == before + 1


def test_receiver_rejects_bad_signature_with_401_and_does_nothing() -> None:
    watcher = RecordingWatcher()
    receiver = WebhookReceiver(watcher, SECRET)
    before = _count("unverified", "false")
    statuses = asyncio.run(_post_all(receiver, (signed_headers(secret="wrong"), BODY), ({}, BODY)))
    assert statuses == [401, 401]
    assert watcher.models == []
    assert _count("unverified", "false") == before + 2


def test_receiver_header_names_are_case_insensitive() -> None:
    watcher = RecordingWatcher()
    receiver = WebhookReceiver(watcher, SECRET)
    lowered = {k.lower(): v for k, v in signed_headers().items()}
    assert _post(receiver, lowered, BODY) == 200


def test_receiver_ignores_unrelated_events() -> None:
    watcher = RecordingWatcher()
    receiver = WebhookReceiver(watcher, SECRET)
    body = json.dumps({"entity": "prompt", "action": "created", "data": {"name": "p"}}).encode()
    assert _post(receiver, signed_headers(body=body), body) == 200
    assert watcher.models == []


# -- replay protection -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_replay_guard_remembers_ids_for_the_window() -> None:
    clock = Clock()
    guard = ReplayGuard(window=300, clock=clock)
    assert guard.seen_before("d-1") is False
    assert guard.seen_before("d-2") is False
    clock.now += 299
    assert guard.seen_before("d-1") is True
    clock.now += 2  # d-1 was first seen 301 s ago: verify() refuses its timestamp by now
    assert guard.seen_before("d-1") is False


def test_replay_guard_memory_is_bounded() -> None:
    guard = ReplayGuard(window=300, clock=Clock(), limit=3)
    for delivery in ("a", "b", "c", "d"):
        assert guard.seen_before(delivery) is False
    assert guard.seen_before("d") is True
    assert guard.seen_before("a") is False  # the oldest was forgotten


def test_receiver_ignores_a_replayed_delivery() -> None:
    watcher = RecordingWatcher()
    receiver = WebhookReceiver(watcher, SECRET)
    before = _count("duplicate", "true")
    headers = signed_headers(delivery="d-replay")
    statuses = asyncio.run(_post_all(receiver, (headers, BODY), (headers, BODY)))
    assert statuses == [200, 200]  # 2xx so that a retrying sender stops
    assert watcher.models == ["iris"]  # acted on once
    assert _count("duplicate", "true") == before + 1


def test_a_forged_delivery_does_not_burn_its_id() -> None:
    watcher = RecordingWatcher()
    receiver = WebhookReceiver(watcher, SECRET)
    forged = signed_headers(secret="wrong", delivery="d-7")
    statuses = asyncio.run(_post_all(receiver, (forged, BODY), (signed_headers(delivery="d-7"), BODY)))
    assert statuses == [401, 200]
    assert watcher.models == ["iris"]


# -- no secret: no receiver unless insecure is explicit --------------------------------------


def _started_receiver(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    started: list[int] = []
    controller = MDController(settings, registry=object())  # type: ignore[arg-type]

    async def record(port: int, host: str = "0.0.0.0") -> None:
        started.append(port)

    monkeypatch.setattr(controller.webhook, "start", record)

    async def cycle() -> None:
        await controller.start()
        await controller.stop()

    asyncio.run(cycle())
    return started


@pytest.mark.parametrize(("env", "expected"), [
    ({}, []),
    ({"webhook_secret": SECRET}, [8081]),
    ({"webhook_insecure": True}, [8081]),
    ({"webhook_secret": ""}, []),  # what helm renders for an unset value
])
def test_receiver_starts_only_with_a_secret_or_explicitly_insecure(
    env: dict[str, Any], expected: list[int], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(**env)
    assert _started_receiver(settings, monkeypatch) == expected
    if not expected:
        assert "webhook receiver not started" in caplog.text
        assert "MODELYARD_WEBHOOK_INSECURE" in caplog.text


def test_registering_a_webhook_without_a_receiver_fails_at_startup() -> None:
    with pytest.raises(ValidationError, match="MODELYARD_WEBHOOK_REGISTER=true needs MODELYARD_WEBHOOK_SECRET"):
        Settings(webhook_register=True)
    assert Settings(webhook_register=True, webhook_insecure=True).webhook_enabled
    assert Settings(webhook_register=True, webhook_secret=SECRET).webhook_enabled
