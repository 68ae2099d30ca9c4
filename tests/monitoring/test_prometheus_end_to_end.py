"""The alerting path with real parts: stable and canary predictors (`tickserve predictor`, labelled by track and
version) and the quality monitor run as processes; a real Prometheus scrapes them with monitoring/rules loaded
(every `for:` shortened to 2s) and a real Alertmanager, configured from monitoring/alertmanager.example.yml,
delivers to webhooks. The canary is made worse for the quality path (its predictions are right 30% of the time,
stable's 80%) and is sent many malformed requests (client errors).

Outcome: exactly the quality rollback alert reaches the rollback webhook, with the model, canary version, namespace
and the bearer token; client errors do not make a server-error rollback; and every dashboard panel's PromQL returns
data from this Prometheus, except feature age (no transformer runs here). The rollback webhook is
alerting_stack.Sink, standing in for the rollback receiver built separately.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from alerting_stack import Sink, alertmanager, prometheus, query
from dashboard_queries import panel_queries
from quality_data import CANARY_VERSION, MODEL, STABLE_VERSION, publish_outcomes

from tickserve import launch, zoo

NAMESPACE = "e2e"
FEATURES = ["f1", "f2", "f3", "f4"]
NEEDS_A_TRANSFORMER = {"Feature age"}
ACCURACY = {"stable": 0.8, "canary": 0.3}


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def send_traffic(stable: launch.Server, canary: launch.Server, rounds: int) -> None:
    good = {"inputs": [{"name": "features", "shape": [4, 4], "datatype": "FP64", "data": [0.1 * i for i in range(16)]}]}
    with httpx.Client(timeout=10) as client:
        for _ in range(rounds):
            for _ in range(25):
                assert client.post(f"{stable.url}/v2/models/{MODEL}/infer", json=good).status_code == 200
                assert client.post(f"{canary.url}/v2/models/{MODEL}/infer", json=good).status_code == 200
                bad = client.post(f"{canary.url}/v2/models/{MODEL}/infer", json={"inputs": []})
                assert bad.status_code == 400
            time.sleep(0.5)


@pytest.mark.integration
def test_a_worse_canary_is_alerted_for_rollback_and_every_panel_has_data(redis_url: str, tmp_path: Path) -> None:
    url = f"{redis_url.rsplit('/', 1)[0]}/7"  # a database of its own
    redis.Redis.from_url(url).flushdb()
    zoo.signal_model(tmp_path / "model", FEATURES, seed=1, version=STABLE_VERSION, shuffle=False)
    stable = launch.predictor(MODEL, tmp_path / "model", track="stable", model_version=STABLE_VERSION)
    canary = launch.predictor(MODEL, tmp_path / "model", track="canary", model_version=CANARY_VERSION)
    monitor = launch.monitor(url, args=["--consumer", "e2e", "--poll_seconds", "0.2", "--judge_min_scored", "50"])
    rollback_sink, user_sink = Sink(), Sink()
    (tmp_path / "am").mkdir()
    (tmp_path / "prom").mkdir()
    try:
        for server in (stable, canary, monitor):
            server.launch()
        for server in (stable, canary, monitor):
            server.wait_ready()
        with alertmanager(tmp_path / "am", rollback_sink.url, user_sink, token="e2e-token") as manager:
            jobs = {"tickserve-predictor": [stable.http, canary.http], "tickserve-monitor": [monitor.http]}
            with prometheus(tmp_path / "prom", jobs, manager.url, {"namespace": NAMESPACE}) as prom:
                scraping = 'count(up{job=~"tickserve-predictor|tickserve-monitor"} == 1) == 3'
                wait_for(lambda: bool(query(prom.url, scraping)), 30, "the first scrapes")
                # Outcomes arrive while Prometheus watches, as they do in production: two symbols' worth, one
                # after the other, so that the scored counters grow between scrapes.
                publish_outcomes(url, seed=31, accuracy=ACCURACY, bars=200, symbol="S1")
                wait_for(lambda: bool(query(prom.url, "tickserve_quality_scored_total")), 30, "scored outcomes")
                publish_outcomes(url, seed=32, accuracy=ACCURACY, bars=200, symbol="S2")
                send_traffic(stable, canary, rounds=6)
                wait_for(lambda: bool(rollback_sink.received), 60, "the rollback notification")
                time.sleep(2)  # a second notification, if any, would arrive by now
                results = {title: [query(prom.url, expr) for expr in exprs] for title, exprs in panel_queries().items()}
                server_error_alerts = query(prom.url, 'ALERTS{alertname="TickserveCanaryServerErrors"}')
                canary_error_ratio = query(prom.url, "tickserve:canary_server_error_ratio")
                client_errors = query(
                    prom.url, 'sum(tickserve_predictor_requests_total{track="canary", outcome="client_error"})'
                )
    finally:
        for server in (monitor, canary, stable):
            server.stop()
        rollback_sink.close()
        user_sink.close()

    alerts = [(headers, alert) for _, headers, body in rollback_sink.received for alert in body["alerts"]]
    assert [alert["labels"]["alertname"] for _, alert in alerts] == ["TickserveCanaryQualityWorse"]
    headers, alert = alerts[0]
    assert headers["Authorization"] == "Bearer e2e-token"
    assert alert["status"] == "firing"
    assert {key: alert["labels"][key] for key in ("model", "model_version", "namespace", "tickserve_action")} == {
        "model": MODEL,
        "model_version": CANARY_VERSION,
        "namespace": NAMESPACE,
        "tickserve_action": "rollback",
    }
    assert not [a for _, _, body in user_sink.received for a in body["alerts"] if "tickserve_action" in a["labels"]]

    # 150 client errors on the canary, and no server-error rollback: 4xx are not server errors.
    assert float(client_errors[0]["value"][1]) == 150
    assert float(canary_error_ratio[0]["value"][1]) == 0
    assert server_error_alerts == []

    empty = {
        title: [i for i, result in enumerate(targets) if not any(math.isfinite(float(s["value"][1])) for s in result)]
        for title, targets in results.items()
        if title not in NEEDS_A_TRANSFORMER
    }
    assert {title: targets for title, targets in empty.items() if targets} == {}, json.dumps(results)[:2000]
