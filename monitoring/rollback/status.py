"""`tickserve rollout status`: per model, what runs, in which phase and why, read live from the world.

Stable and canary versions and the canary's traffic come from the InferenceService, the phase from
`lifecycle.decide` over the registry, the forge's open pull requests and the cluster (the same derivation the
rollback receiver records), the Flux hold from the Kustomization that applied the InferenceService, and the
judge's verdict with its n per track from Prometheus, when given.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import kubernetes

from tickserve.monitoring.rollback.cluster import GROUP, PLURAL, VERSION
from tickserve.monitoring.rollback.gitops import HoldError, held
from tickserve.monitoring.rollback.lifecycle import Deployed, Verdict, observe
from tickserve.registry_sync.controller import Reconciler
from tickserve.registry_sync.forges import Forge
from tickserve.registry_sync.settings import ModelMapping


@dataclass(frozen=True)
class ModelStatus:
    model: str
    deployed: Deployed
    verdict: Verdict
    pull_request: str | None
    judge: str
    hold: str = "-"

    def row(self) -> list[str]:
        canary = f"v{self.deployed.canary} ({self.deployed.traffic}%)" if self.deployed.canary else "-"
        stable = f"v{self.deployed.stable}" if self.deployed.stable else "-"
        return [self.model, stable, canary, self.verdict.phase.value, self.verdict.reason, self.pull_request or "-",
                self.hold, self.judge]  # fmt: skip


HEADER = ["MODEL", "STABLE", "CANARY", "PHASE", "REASON", "PULL REQUEST", "GITOPS HOLD", "JUDGE"]


def model_status(
    reconciler: Reconciler,
    api_client: kubernetes.client.ApiClient,
    namespace: str,
    mapping: ModelMapping,
    prometheus_url: str | None,
) -> ModelStatus:
    """One model's status; raises what its sources raise (the command reports it per model)."""
    isvc = kubernetes.client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, mapping.chart_model
    )
    state = reconciler.registry.read(mapping.registered_model)
    link = open_pull_request(reconciler.forge, mapping.chart_model)
    verdict = observe(isvc, state, reconciler.policy.canary_aliases, reconciler.policy.canary_stages, link)
    judge = judge_summary(prometheus_url, mapping.chart_model) if prometheus_url else "-"
    try:
        hold = held(api_client, isvc) or "-"
    except HoldError as error:  # e.g. no RBAC to read Kustomizations: say so, the rest of the row still stands
        hold = f"unreadable ({error.status})"
    return ModelStatus(mapping.chart_model, Deployed.of(isvc), verdict, link, judge, hold)


def open_pull_request(forge: Forge, chart_model: str) -> str | None:
    """The link of the model's open registry-sync pull request, if any."""
    open_prs = [pr for pr in forge.pull_requests(chart_model) if pr.state == "open"]
    return (open_prs[0].url or open_prs[0].branch) if open_prs else None


def judge_summary(prometheus_url: str, model: str) -> str:
    """'worse (n canary 412, stable 3,870)' from the quality judge's series in Prometheus; '-' without any."""
    verdicts = _query(prometheus_url, f'tickserve_judge_verdict{{model="{model}"}} == 1')
    if not verdicts:
        return "-"
    scored = {
        sample["metric"].get("track", "?"): int(float(sample["value"][1]))
        for sample in _query(prometheus_url, f'tickserve_judge_scored{{model="{model}"}}')
    }
    counts = ", ".join(f"{track} {n:,}" for track, n in sorted(scored.items()))
    return f"{verdicts[0]['metric'].get('verdict', '?')} (n {counts})"


def _query(prometheus_url: str, promql: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url.rstrip('/')}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def render(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
