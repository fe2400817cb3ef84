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
from modelyard_operator.modeldeployment.webhook import WebhookReceiver, parse_event, sign, verify

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
