"""The dashboard's panel queries as Prometheus runs them: Grafana's variables substituted as a query with every
namespace and model selected sends them."""

from __future__ import annotations

import json
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "tickserve" / "dashboards" / "tickserve.json"
VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$model": ".*"}


def panel_queries() -> dict[str, list[str]]:
    """Panel title -> its PromQL with Grafana's variables substituted."""
    queries = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        exprs = []
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            exprs.append(expr)
        queries[panel["title"]] = exprs
    return queries
