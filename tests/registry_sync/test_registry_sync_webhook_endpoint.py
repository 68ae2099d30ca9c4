"""The webhook endpoint over real HTTP: MLflow's HMAC scheme, a timestamp window, replay refusal.
(test_registry_sync_flow.py checks deliveries signed by a real MLflow server.)"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tickserve.registry_sync.webhooks import DeliveryVerifier, WebhookServer, sign

SECRET = "webhook-secret"


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[str]]]:
    triggered: list[str] = []
    server = WebhookServer("127.0.0.1", 0, DeliveryVerifier(SECRET, 300), triggered.append).start()
    yield f"http://127.0.0.1:{server.port}/webhooks/mlflow", triggered
    server.stop()


def delivery(secret: str = SECRET, *, age: float = 0, event=("model_version_alias", "created"), name="signal-1m"):
    body = json.dumps(
        {"entity": event[0], "action": event[1], "data": {"name": name, "alias": "challenger", "version": "7"}}
    )
    delivery_id, timestamp = str(uuid.uuid4()), str(int(time.time() - age))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": timestamp,
        "X-MLflow-Signature": sign(secret, delivery_id, timestamp, body.encode()),
    }
    return body, headers


def test_a_valid_delivery_triggers_a_reconcile_of_its_model(endpoint) -> None:
    url, triggered = endpoint
    body, headers = delivery()
    response = httpx.post(url, content=body, headers=headers)
    assert response.status_code == 200 and triggered == ["signal-1m"]


def test_unsigned_badly_signed_stale_and_tampered_deliveries_get_401_and_trigger_nothing(endpoint) -> None:
    url, triggered = endpoint
    body, headers = delivery()
    unsigned = {k: v for k, v in headers.items() if k != "X-MLflow-Signature"}
    assert httpx.post(url, content=body, headers=unsigned).status_code == 401
    assert (
        httpx.post(url, content=body, headers=delivery(secret="wrong")[1] | {"X-MLflow-Delivery-Id": "x"}).status_code
        == 401
    )
    bad_body, bad_headers = delivery(secret="not-the-secret")
    assert httpx.post(url, content=bad_body, headers=bad_headers).status_code == 401
    stale_body, stale_headers = delivery(age=301)
    assert httpx.post(url, content=stale_body, headers=stale_headers).status_code == 401
    assert httpx.post(url, content=body.replace("signal-1m", "signal-5m"), headers=headers).status_code == 401
    assert triggered == []


def test_a_replayed_delivery_gets_401(endpoint) -> None:
    url, triggered = endpoint
    body, headers = delivery()
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    replay = httpx.post(url, content=body, headers=headers)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]
    assert triggered == ["signal-1m"]


def test_events_registry_sync_does_not_act_on_are_acknowledged_and_ignored(endpoint) -> None:
    url, triggered = endpoint
    body, headers = delivery(event=("prompt", "created"))
    assert httpx.post(url, content=body, headers=headers).status_code == 202
    assert triggered == []
