"""The alert rules: one source (the chart template), the plain rules file rendered from it without drift, and
`promtool test rules` unit tests that cover every alert both ways (fires; stays silent). Real helm and promtool."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helm_tool import find_helm
from ruamel.yaml import YAML
from tiers import require_binary

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring" / "rules" / "tickserve.rules.yaml"
RULE_TESTS = sorted((REPO / "monitoring" / "rules" / "tests").glob("*.test.yaml"))
CHART = REPO / "charts" / "tickserve"
load_yaml = YAML(typ="safe").load


@pytest.fixture(scope="module")
def helm() -> str:
    return find_helm()


def run(*command: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def alerts_in(rules_text: str) -> dict[str, dict]:
    return {
        rule["alert"]: rule for group in load_yaml(rules_text)["groups"] for rule in group["rules"] if "alert" in rule
    }


def test_the_plain_rules_file_equals_a_fresh_render_of_the_chart(helm: str, tmp_path: Path) -> None:
    fresh = tmp_path / "tickserve.rules.yaml"
    result = run("bash", REPO / "hack" / "render-rules.sh", env={"HELM": helm, "RULES_FILE": str(fresh)})
    assert result.returncode == 0, result.stderr
    assert fresh.read_text() == RULES.read_text(), "monitoring/rules/ drifted from the chart; run `make rules`"


def test_thresholds_and_durations_are_chart_values(helm: str) -> None:
    result = run(
        helm, "template", "t", CHART, "--show-only", "templates/prometheusrules.yaml",
        "--set", "monitoring.rules.enabled=true", "--set", "monitoring.rules.serverErrors.factor=3",
        "--set", "monitoring.rules.latency.for=7m", "--set", "monitoring.rules.minRequests=555",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rule = load_yaml(result.stdout)
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert "group_left tickserve:stable_server_error_ratio * 3\n" in alerts["TickserveCanaryServerErrors"]["expr"]
    assert alerts["TickserveCanaryLatencyHigh"]["for"] == "7m"
    assert "tickserve:canary_requests:increase >= 555" in alerts["TickserveCanaryLatencyHigh"]["expr"]
    assert rule["kind"] == "PrometheusRule"


def test_the_prometheus_rule_is_opt_in(helm: str) -> None:
    result = run(helm, "template", "t", CHART)
    assert result.returncode == 0, result.stderr
    assert "kind: PrometheusRule" not in result.stdout


def test_promtool_accepts_the_rules_file() -> None:
    promtool = require_binary("promtool")
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    promtool = require_binary("promtool")
    result = run(promtool, "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A silent case turned into an expected firing fails: the suite above is not vacuous."""
    promtool = require_binary("promtool")
    source = REPO / "monitoring" / "rules" / "tests" / "canary_server_errors.test.yaml"
    broken = tmp_path / "tests" / source.name
    broken.parent.mkdir()
    shutil.copy(RULES, tmp_path / RULES.name)
    text = source.read_text()
    silent_stable_worse = text.index("a stable that is worse than the canary")
    head, tail = text[:silent_stable_worse], text[silent_stable_worse:]
    tail = tail.replace(
        "exp_alerts: []", "exp_alerts:\n          - exp_labels: {severity: critical, tickserve_action: rollback}", 1
    )
    broken.write_text(head + tail)
    result = run(promtool, "test", "rules", broken)
    assert result.returncode != 0
    assert "TickserveCanaryServerErrors" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    alerts = alerts_in(RULES.read_text())
    fired: dict[str, int] = dict.fromkeys(alerts, 0)
    silent: dict[str, int] = dict.fromkeys(alerts, 0)
    for path in RULE_TESTS:
        for case in load_yaml(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                name = check["alertname"]
                assert name in alerts, f"{path.name} tests an alert the rules do not define: {name}"
                expected = check.get("exp_alerts") or []
                (fired if expected else silent)[name] += 1
                if alerts[name]["labels"].get("tickserve_action") == "rollback":
                    for alert in expected:
                        assert {"model", "model_version", "namespace"} <= alert["exp_labels"].keys()
    assert [name for name, count in fired.items() if not count] == []
    assert [name for name, count in silent.items() if not count] == []


def test_rollback_alerts_are_exactly_the_three_canary_comparisons() -> None:
    alerts = alerts_in(RULES.read_text())
    rollback = sorted(name for name, rule in alerts.items() if rule["labels"].get("tickserve_action") == "rollback")
    assert rollback == ["TickserveCanaryLatencyHigh", "TickserveCanaryQualityWorse", "TickserveCanaryServerErrors"]
    assert alerts["TickserveCanaryInconclusive"]["labels"] == {
        "severity": "warning",
        "tickserve_verdict": "inconclusive",
    }
    # Client errors are never server errors: only outcome="server_error" is ever counted as one.
    assert 'outcome="client_error"' not in RULES.read_text()
