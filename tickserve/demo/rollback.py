"""The demo's rollback: what the rollback receiver executes on one machine, where there is no Kubernetes.

In a cluster `executor.RollbackExecutor` patches the InferenceService, opens the revert pull request and tags
MLflow. In the demo the request router (`TrafficSplit`) stands in for the InferenceService's traffic split, so the
local rollback does the local equivalent of each step, with the same checks and the same evidence:

1. **Check.** The alert's version must be the canary the demo serves, or one already rolled back (then only what
   is left is finished). An alert for another model or version changes nothing, and says so.
2. **Traffic.** The canary's share goes to 0 (Knative's `canaryTrafficPercent: 0`): every request goes to stable.
3. **Registry.** The version gets the `tickserve.rollback` tag (`executor.evidence`: alert, start, summary) and
   loses its `challenger` alias, through registry-sync's `Registry`.
4. **Record.** The lifecycle phase, derived by `lifecycle.decide` from what is now true, and a log line.

There is no git step: the demo has no GitOps repository (`tickserve demo --promotion` shows that machinery).
"""

from __future__ import annotations

import logging
import threading

from tickserve.monitoring.rollback.alerts import RollbackRequest
from tickserve.monitoring.rollback.executor import RollbackReport, evidence
from tickserve.monitoring.rollback.lifecycle import ROLLBACK_TAG, Deployed, decide
from tickserve.registry_sync.registry import Registry, RegistryUnavailable

log = logging.getLogger("tickserve.demo.rollback")

CHALLENGER_ALIAS = "challenger"


class TrafficSplit:
    """One model's stable and canary versions and the share of requests the canary gets (thread-safe: the
    receiver's worker writes it, the request loop reads it)."""

    def __init__(self, model: str, stable: str, canary: str | None, share: float) -> None:
        self.model, self.stable, self.canary = model, stable, canary
        self._share = share if canary else 0.0
        self._lock = threading.Lock()

    @property
    def share(self) -> float:
        with self._lock:
            return self._share

    def deployed(self) -> Deployed:
        with self._lock:
            return Deployed(stable=self.stable, canary=self.canary, traffic=round(self._share * 100))

    def stop_canary(self) -> bool:
        """Send no more requests to the canary; True when it had a share."""
        with self._lock:
            had, self._share = self._share > 0, 0.0
            return had


class LocalRollback:
    """The receiver's `execute` for the demo; keeps every report for the live view."""

    def __init__(self, split: TrafficSplit, registry: Registry) -> None:
        self.split = split
        self.registry = registry
        self.reports: list[RollbackReport] = []

    def execute(self, request: RollbackRequest) -> RollbackReport:
        try:
            report = self._execute(request)
        except RegistryUnavailable as error:
            report = RollbackReport(request, "failed", [str(error)])
        log.log(logging.WARNING if report.result == "rolled_back" else logging.INFO, "rollback %s", report)
        self.reports.append(report)
        return report

    def _execute(self, request: RollbackRequest) -> RollbackReport:
        split = self.split
        if request.model != split.model:
            return RollbackReport(request, "unmapped", [f"the demo serves no canary of {request.model}"])
        version = self.registry.read(split.model).version(request.version)
        if version is None:
            return RollbackReport(request, "not_canary", [f"registry {split.model} has no version {request.version}"])
        already = ROLLBACK_TAG in version.tags
        if split.canary != request.version and not already:
            return RollbackReport(request, "not_canary", [f"v{request.version} is not the canary (v{split.canary})"])
        report = RollbackReport(request, "already_rolled_back" if already else "rolled_back")
        before = split.deployed().traffic
        if split.stop_canary():
            report.steps.append(f"canary traffic {before}% -> 0%")
        if not already:
            self.registry.set_tag(split.model, request.version, ROLLBACK_TAG, evidence(request))
            report.steps.append(f"tagged {split.model}/{request.version} {ROLLBACK_TAG}")
        if CHALLENGER_ALIAS in version.aliases:
            self.registry.delete_alias(split.model, CHALLENGER_ALIAS)
            report.steps.append(f"removed alias {split.model}@{CHALLENGER_ALIAS}")
        state = self.registry.read(split.model)
        named = state.with_alias(CHALLENGER_ALIAS)
        verdict = decide(
            split.deployed(), {v.version: dict(v.tags) for v in state.versions}, named and named.version, None
        )
        report.steps.append(f"phase {verdict.phase.value}")
        return report
