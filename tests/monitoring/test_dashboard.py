"""The Grafana dashboard: the panels the canary workflow needs, every query valid PromQL (checked by promtool), and
the chart shipping the JSON unchanged in an opt-in ConfigMap for Grafana's sidecar. tests/monitoring/
test_prometheus_end_to_end.py runs the queries against a real Prometheus scraping real servers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from dashboard_queries import DASHBOARD, panel_queries
from helm_tool import find_helm
from ruamel.yaml import YAML
from tiers import require_binary

REPO = Path(__file__).resolve().parents[2]
PANELS = {
    "requests and errors by track": ["Requests by track", "Errors by track"],
    "p50/p99 by track": ["Latency p50 / p99 by track"],
    "batch size": ["Batch size"],
    "feature age": ["Feature age"],
    "accuracy by track": ["Directional accuracy by track"],
    "judge verdict and n": ["Quality judge verdict", "Quality judge: scored outcomes per track"],
    "canary traffic": ["Canary traffic"],
    "rollbacks": ["Rollbacks"],
}


def check_as_rules(promtool: str, exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool parses each expression as a recording rule's."""
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)


def test_the_dashboard_has_a_panel_for_everything_the_canary_workflow_needs() -> None:
    titles = set(panel_queries())
    missing = {need: panels for need, panels in PANELS.items() if not set(panels) <= titles}
    assert not missing


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    queries = panel_queries()
    assert all(queries.values()), "every panel has a query"
    exprs = [expr for panel in queries.values() for expr in panel]
    result = check_as_rules(promtool, exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout
    assert not [e for e in exprs if "$" in e], "a Grafana variable the check does not substitute"


def test_the_query_check_can_fail(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    result = check_as_rules(promtool, ["sum by (track (rate(x[1m]))"], tmp_path)
    assert result.returncode != 0


def test_the_chart_ships_the_dashboard_in_an_opt_in_configmap() -> None:
    helm, chart = find_helm(), REPO / "charts" / "tickserve"
    rendered = subprocess.run(
        [helm, "template", "t", str(chart), "--set", "monitoring.dashboard.enabled=true", "--show-only",
         "templates/grafana-dashboard.yaml"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    configmap = YAML(typ="safe").load(rendered)
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["tickserve.json"]) == json.loads(DASHBOARD.read_text())
    default = subprocess.run([helm, "template", "t", str(chart)], capture_output=True, text=True, check=True).stdout
    assert "grafana_dashboard" not in default
