"""Shared by the rollback tests of this tier (test_k8s_rollback_loop, test_k8s_gitops_loop): reading what a
rollback left in the cluster, and the real alerting chain that raises a canary's quality alert.

`bad_canary_alerting` starts the quality monitor (`tickserve monitor`, a process) on a Redis database of its own,
Alertmanager configured from monitoring/alertmanager.example.yml delivering rollbacks to `receiver_url`, and
Prometheus with monitoring/rules (every `for:` shortened to 2s) scraping the monitor; then it writes outcomes in
which the canary is right 30% of the time against stable's 80%, so the judge says `worse` and Prometheus fires
TickserveCanaryQualityWorse for (namespace, model, canary version).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import kubernetes
import redis
from alerting_stack import Service, Sink, alertmanager, prometheus
from quality_data import publish_outcomes

from tickserve import launch

ACCURACY = {"stable": 0.8, "canary": 0.3}


def isvc(api_client: kubernetes.client.ApiClient, namespace: str, name: str) -> dict:
    return kubernetes.client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
    )


def hpas(api_client: kubernetes.client.ApiClient, namespace: str) -> list[str]:
    items = kubernetes.client.AutoscalingV2Api(api_client).list_namespaced_horizontal_pod_autoscaler(namespace).items
    return sorted(item.metadata.name for item in items)


def rollback_events(api_client: kubernetes.client.ApiClient, namespace: str) -> list[str]:
    events = kubernetes.client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    return [event.message for event in events if event.reason == "RolledBack"]


def deliver(receiver_url: str, token: str, *, namespace: str, model: str, version: str) -> None:
    """One Alertmanager notification of a firing quality alert, posted straight to the receiver: what a repeat
    (repeat_interval) or a second Alertmanager replica delivers."""
    alert = {"status": "firing", "startsAt": "2026-11-30T10:00:00Z",
             "labels": {"alertname": "TickserveCanaryQualityWorse", "tickserve_action": "rollback", "model": model,
                        "model_version": version, "namespace": namespace}}  # fmt: skip
    response = httpx.post(
        f"{receiver_url}/alerts",
        json={"version": "4", "status": "firing", "alerts": [alert]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text


def eventually(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.3)


@contextlib.contextmanager
def bad_canary_alerting(
    workdir: Path,
    redis_url: str,
    receiver_url: str,
    token: str,
    *,
    namespace: str,
    model: str,
    versions: dict[str, str],
) -> Iterator[Service]:
    """The chain from a bad canary's outcomes to the rollback receiver (see the module docstring); yields
    Alertmanager, whose API the caller may post more alerts to."""
    outcomes = f"{redis_url.rsplit('/', 1)[0]}/9"  # a database of its own
    redis.Redis.from_url(outcomes).flushdb()
    monitor = launch.monitor(outcomes, args=["--consumer", "loop", "--poll_seconds", "0.2", "--judge_min_scored", "50"])
    user = Sink()
    (workdir / "am").mkdir(parents=True)
    (workdir / "prom").mkdir()
    try:
        monitor.start()
        with (
            alertmanager(workdir / "am", receiver_url, user, token=token) as manager,
            prometheus(workdir / "prom", {"tickserve-monitor": [monitor.http]}, manager.url, {"namespace": namespace}),
        ):
            publish_outcomes(outcomes, seed=41, accuracy=ACCURACY, bars=200, model=model, versions=versions)
            yield manager
    finally:
        monitor.stop()
        user.close()
