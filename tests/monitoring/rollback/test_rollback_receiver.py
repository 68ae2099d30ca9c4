"""The rollback receiver over real HTTP: bearer token, Alertmanager v4 payloads, fast answers, queued work."""

from __future__ import annotations

import threading

import httpx
import pytest

from tickserve.monitoring.rollback.alerts import PayloadError, RollbackRequest, rollback_requests
from tickserve.monitoring.rollback.receiver import RollbackReceiver

TOKEN = "s3cret-token"


def alert(status: str = "firing", **labels: str) -> dict:
    base = {"alertname": "TickserveCanaryErrorRatio", "tickserve_action": "rollback", "model": "ticks-1m",
            "model_version": "7", "namespace": "trading"}  # fmt: skip
    return {
        "status": status,
        "labels": {**base, **labels},
        "annotations": {"summary": "canary 5xx ratio 0.2 vs stable 0.001"},
        "startsAt": "2026-11-30T10:00:00Z",
        "fingerprint": "abc",
    }


def payload(*alerts: dict) -> dict:
    return {"version": "4", "status": "firing", "receiver": "tickserve-rollback", "alerts": list(alerts)}


@pytest.fixture
def receiver():
    executed: list[RollbackRequest] = []
    release = threading.Event()

    def execute(request: RollbackRequest) -> None:
        release.wait(10)  # a slow rollback: the HTTP answer must not wait for it
        executed.append(request)

    server = RollbackReceiver("127.0.0.1", 0, TOKEN, execute).start()
    yield server, executed, release
    release.set()
    server.stop()


def post(server: RollbackReceiver, body: object, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"http://127.0.0.1:{server.port}/alerts", json=body, headers=headers, timeout=5)


def test_a_delivery_without_or_with_a_wrong_token_is_401_and_queues_nothing(receiver) -> None:
    server, executed, release = receiver
    assert post(server, payload(alert()), token=None).status_code == 401
    assert post(server, payload(alert()), token="guess").status_code == 401
    release.set()
    assert server.drain(5)
    assert executed == []


def test_a_firing_rollback_alert_is_answered_before_the_rollback_runs(receiver) -> None:
    server, executed, release = receiver
    response = post(server, payload(alert(), alert(alertname="TickserveCanaryLatency")))
    assert response.status_code == 202
    assert response.json() == {"queued": ["trading/ticks-1m v7"]}, "two alerts on one version are one rollback"
    assert executed == []
    release.set()
    assert server.drain(5)
    assert [(r.namespace, r.model, r.version) for r in executed] == [("trading", "ticks-1m", "7")]


def test_a_malformed_payload_is_400_naming_the_problem(receiver) -> None:
    server, _, _ = receiver
    response = post(server, {"alerts": "many"})
    assert response.status_code == 400
    assert "alerts" in response.json()["error"]
    missing = post(server, payload(alert(model_version="")))
    assert missing.status_code == 400
    assert "model_version" in missing.json()["error"]


def test_resolved_and_non_rollback_alerts_ask_for_no_rollback() -> None:
    page = alert(tickserve_action="page")
    assert rollback_requests(payload(alert(status="resolved"), page)) == []
    with pytest.raises(PayloadError, match="version"):
        rollback_requests({**payload(alert()), "version": "3"})
