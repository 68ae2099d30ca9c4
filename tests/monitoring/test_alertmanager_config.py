"""Alertmanager routing: monitoring/alertmanager.example.yml passes `amtool check-config` and routes every alert of
the rules file where it belongs; the chart's AlertmanagerConfig routes the same way; and a real Alertmanager
delivers rollback alerts, grouped by model and with the bearer token, to a webhook.

The webhook in the delivery test is alerting_stack.Sink, which stands in for the rollback receiver.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alerting_stack import EXAMPLE, REPO, RULES, Sink, alertmanager, yaml
from helm_tool import find_helm
from tiers import require_binary

CHART = REPO / "charts" / "tickserve"


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True)


def alert_rules() -> dict[str, dict[str, str]]:
    """alertname -> the labels its rule sets."""
    groups = yaml.load(RULES.read_text())["groups"]
    return {rule["alert"]: rule.get("labels", {}) for group in groups for rule in group["rules"] if "alert" in rule}


def test_the_example_passes_amtool_check_config() -> None:
    amtool = require_binary("amtool")
    result = run(amtool, "check-config", EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_check_config_refuses_a_broken_route(tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(EXAMPLE.read_text().replace("- receiver: tickserve-rollback", "- receiver: nobody"))
    result = run(amtool, "check-config", broken)
    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr


def test_every_rule_routes_to_its_receiver() -> None:
    """Rollback alerts to the rollback receiver; everything else, inconclusive included, to the user's."""
    amtool = require_binary("amtool")
    rules = alert_rules()
    assert len(rules) >= 9
    for alertname, labels in rules.items():
        expected = "tickserve-rollback" if labels.get("tickserve_action") == "rollback" else "tickserve-user"
        alert = [f"{key}={value}" for key, value in {**labels, "alertname": alertname, "model": "m"}.items()]
        result = run(amtool, "config", "routes", "test", f"--config.file={EXAMPLE}", *alert)
        assert result.stdout.strip() == expected, f"{alertname}: {result.stdout}{result.stderr}"


def chart_alertmanager_config() -> dict:
    result = run(
        find_helm(), "template", "t", CHART, "--show-only", "templates/alertmanagerconfig.yaml",
        "--set", "monitoring.alertmanagerConfig.enabled=true",
        "--set", "monitoring.alertmanagerConfig.rollback.url=http://rollback.ns.svc:8080/alerts",
        "--set", "monitoring.alertmanagerConfig.rollback.tokenSecret.name=rollback-token",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.load(result.stdout)


def test_the_chart_routes_like_the_example() -> None:
    config = chart_alertmanager_config()
    example = yaml.load(EXAMPLE.read_text())
    route, example_route = config["spec"]["route"]["routes"][0], example["route"]["routes"][0]
    assert route["matchers"] == [{"name": "tickserve_action", "matchType": "=", "value": "rollback"}]
    assert example_route["matchers"] == ['tickserve_action="rollback"']
    assert route["groupBy"] == example_route["group_by"] == ["namespace", "model"]
    assert [route["groupWait"], route["groupInterval"], route["repeatInterval"]] == [
        example_route["group_wait"], example_route["group_interval"], example_route["repeat_interval"]
    ]  # fmt: skip
    webhook = config["spec"]["receivers"][0]["webhookConfigs"][0]
    assert webhook["httpConfig"]["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "rollback-token", "key": "token"},
    }
    assert config["spec"]["route"]["receiver"] == "tickserve-user" == config["spec"]["receivers"][1]["name"]


def test_the_chart_refuses_a_rollback_route_without_url_or_token() -> None:
    result = run(find_helm(), "template", "t", CHART, "--set", "monitoring.alertmanagerConfig.enabled=true")
    assert result.returncode != 0
    assert "monitoring.alertmanagerConfig.rollback.url" in result.stderr


@pytest.fixture
def sinks() -> Iterator[tuple[Sink, Sink]]:
    rollback, user = Sink(), Sink()
    yield rollback, user
    rollback.close()
    user.close()


@pytest.mark.integration
def test_a_real_alertmanager_delivers_rollbacks_by_model_with_the_bearer_token(
    sinks: tuple[Sink, Sink], tmp_path: Path
) -> None:
    rollback_sink, user_sink = sinks
    labels = {"tickserve_action": "rollback", "severity": "critical", "namespace": "ns"}
    alerts = [
        {"labels": {**labels, "alertname": "TickserveCanaryServerErrors", "model": "m", "model_version": "8"}},
        {"labels": {**labels, "alertname": "TickserveCanaryLatencyHigh", "model": "m", "model_version": "8"}},
        {"labels": {**labels, "alertname": "TickserveCanaryQualityWorse", "model": "n", "model_version": "3"}},
        {"labels": {"alertname": "TickservePredictorDown", "severity": "critical", "namespace": "ns", "pod": "p"}},
    ]
    with alertmanager(tmp_path, rollback_sink.url, user_sink, token="s3cret-token") as manager:
        httpx.post(f"{manager.url}/api/v2/alerts", json=alerts).raise_for_status()
        deadline = time.monotonic() + 30
        while (len(rollback_sink.received) < 2 or not user_sink.received) and time.monotonic() < deadline:
            time.sleep(0.2)

    assert len(rollback_sink.received) == 2, "one notification per model"
    by_model = {body["groupLabels"]["model"]: (path, headers, body) for path, headers, body in rollback_sink.received}
    path, headers, body = by_model["m"]
    assert path == "/alerts"
    assert headers["Authorization"] == "Bearer s3cret-token"
    assert body["version"] == "4" and body["receiver"] == "tickserve-rollback" and body["status"] == "firing"
    assert body["groupLabels"] == {"namespace": "ns", "model": "m"}
    assert sorted(a["labels"]["alertname"] for a in body["alerts"]) == [
        "TickserveCanaryLatencyHigh",
        "TickserveCanaryServerErrors",
    ]
    assert {a["labels"]["model_version"] for a in body["alerts"]} == {"8"}
    assert [a["labels"]["alertname"] for a in by_model["n"][2]["alerts"]] == ["TickserveCanaryQualityWorse"]
    assert [a["labels"]["alertname"] for _, _, b in user_sink.received for a in b["alerts"]] == [
        "TickservePredictorDown"
    ]
    assert all("Authorization" not in h for _, h, _ in user_sink.received)
