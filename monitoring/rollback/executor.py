"""One rollback, in the order that keeps the cluster, git and the registry in agreement, idempotently.

For a firing rollback alert on (namespace, model, version):

0. **Hold GitOps.** When Flux applied the InferenceService, its Kustomization is suspended until the revert is
   merged (`gitops.hold`), so drift correction cannot put the canary back; `tidy` releases it once registry-sync
   finds git in sync. A hold that cannot be written is reported and does not stop the rollback: taking the
   canary's traffic away matters more, and a canary Flux re-applies is rolled back by the next delivery.
1. **Check.** The version must be the InferenceService's canary, or one already rolled back (then the steps
   below only finish what an interrupted rollback left). An alert for any other version changes nothing.
2. **Cluster.** `cluster.roll_back_canary`: the canary's traffic goes away at once (Knative: 0%; Standard: the
   canary entry and its orphaned HPA removed).
3. **Registry.** The version gets the `tickserve.rollback` tag (alert, when it started, its summary: the same
   value for every delivery of that alert) and loses its canary aliases (or its `Staging` stage), so
   registry-sync will not propose it again and plans the canary's retirement instead.
4. **Git.** One registry-sync pass for the model opens the revert pull request with registry-sync's own
   exactly-once machinery (content-addressed branch, marker, adopt on "already exists").
5. **Record.** The `RolledBack` phase on the InferenceService (annotations, one Event), a metric and a log line.

Every step reads before it writes and writes a value derived from the alert, so Alertmanager's duplicate
deliveries, repeats, flapping and two receivers acting at once end in one patch, one tag and one pull request
per (model, version); a crash between steps is finished by the next delivery.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import kubernetes
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from tickserve.monitoring.rollback.alerts import RollbackRequest
from tickserve.monitoring.rollback.cluster import (
    GROUP,
    PLURAL,
    VERSION,
    RollbackError,
    delete_orphaned_hpas,
    roll_back_canary,
)
from tickserve.monitoring.rollback.gitops import HoldError, hold, model_key, release
from tickserve.monitoring.rollback.lifecycle import ROLLBACK_TAG, Deployed, Phase, PhaseMetric, Verdict, observe, record
from tickserve.registry_sync.registry import Registry

log = logging.getLogger("tickserve.rollback")


@dataclass
class RollbackReport:
    """What one execution did; `steps` is empty when nothing needed doing."""

    request: RollbackRequest
    result: str  # rolled_back, already_rolled_back, not_canary, unmapped, failed
    steps: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        r = self.request
        return f"{r.namespace}/{r.model} v{r.version}: {self.result}" + (
            f" ({'; '.join(self.steps)})" if self.steps else ""
        )


class RollbackMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.rollbacks = Counter(
            "tickserve_rollbacks", "Canary versions rolled back (once per version)", ["namespace", "model"],
            registry=registry,
        )  # fmt: skip
        self.deliveries = Counter(
            "tickserve_rollback_requests", "Rollback alerts handled, by result", ["result"], registry=registry
        )
        self.phase = PhaseMetric(registry)


class RollbackExecutor:
    """Executes rollbacks for the models registry-sync maps (chart model -> registered model).

    `reconcile(registered_model)` runs one registry-sync pass for that model and returns its outcome text (the
    revert pull request is opened there); the executor shares registry-sync's process and code for git, forge
    and MLflow.
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        registry: Registry,
        models: Mapping[str, str],
        reconcile: Callable[[str], str],
        *,
        canary_aliases: Sequence[str] = ("challenger",),
        canary_stages: Sequence[str] = ("Staging",),
        open_pull_request: Callable[[str], str | None] = lambda chart_model: None,
        metrics: RollbackMetrics | None = None,
        hold_flux: bool = True,
    ) -> None:
        self.api_client = api_client
        self.registry = registry
        self.models = dict(models)
        self.reconcile = reconcile
        self.canary_aliases = tuple(canary_aliases)
        self.canary_stages = tuple(canary_stages)
        self.open_pull_request = open_pull_request
        self.metrics = metrics or RollbackMetrics()
        self.hold_flux = hold_flux

    def execute(self, request: RollbackRequest) -> RollbackReport:
        try:
            report = self._execute(request)
        except (RollbackError, kubernetes.client.ApiException, RuntimeError) as error:
            report = RollbackReport(request, "failed", [f"{type(error).__name__}: {error}"])
            log.error("rollback %s", report)
        else:
            log.log(logging.WARNING if report.result == "rolled_back" else logging.INFO, "rollback %s", report)
        self.metrics.deliveries.labels(report.result).inc()
        return report

    def _execute(self, request: RollbackRequest) -> RollbackReport:
        registered = self.models.get(request.model)
        if registered is None:
            return RollbackReport(request, "unmapped", [f"{request.model} is not a model registry-sync maps"])
        isvc = self._isvc(request.namespace, request.model)
        deployed = Deployed.of(isvc)
        state = self.registry.read(registered)
        version = state.version(request.version)
        if version is None:
            return RollbackReport(request, "not_canary", [f"registry {registered} has no version {request.version}"])
        already = ROLLBACK_TAG in version.tags
        if deployed.canary != request.version and not already:
            canary = f"v{deployed.canary}" if deployed.canary else "none"
            return RollbackReport(request, "not_canary", [f"v{request.version} is not the canary (canary: {canary})"])

        report = RollbackReport(request, "already_rolled_back" if already else "rolled_back")
        if deployed.canary == request.version:
            if self.hold_flux:
                report.steps.extend(self._hold(isvc, request.version))
            cluster = roll_back_canary(self.api_client, request.namespace, request.model)
            report.steps.extend(cluster.changes)
        if not already:
            self.registry.set_tag(registered, request.version, ROLLBACK_TAG, evidence(request))
            report.steps.append(f"tagged {registered}/{request.version} {ROLLBACK_TAG}")
        for alias in sorted(set(version.aliases) & set(self.canary_aliases)):
            self.registry.delete_alias(registered, alias)
            report.steps.append(f"removed alias {registered}@{alias}")
        if version.stage in self.canary_stages:
            self.registry.archive(registered, request.version)
            report.steps.append(f"archived {registered}/{request.version} (was {version.stage})")
        report.steps.append(f"registry-sync: {self.reconcile(registered)}")
        # The reason is the evidence of the first delivery (the tag), whatever later deliveries say.
        reason = f"v{request.version}: {version.tags[ROLLBACK_TAG] if already else evidence(request)}"
        if record(
            self.api_client,
            self._isvc(request.namespace, request.model),
            Verdict(Phase.ROLLED_BACK, reason),
            self.metrics.phase,
        ):
            report.steps.append("recorded RolledBack")
        if not already:
            self.metrics.rollbacks.labels(request.namespace, request.model).inc()
        return report

    def tidy(self, namespace: str, in_sync: Mapping[str, str] | None = None) -> None:
        """After each full registry-sync pass, for every model: delete the HPAs KServe left behind (a promotion
        leaves the old stable's, see cluster.delete_orphaned_hpas), release its Flux hold when the pass found git
        in sync for it (`in_sync`: registered model -> the commit found in sync; the revert was merged) and record
        the lifecycle phase the world shows now. Level-triggered: nothing is remembered between calls; a model
        that cannot be read is logged."""
        in_sync = in_sync or {}
        for chart_model, registered in self.models.items():
            try:
                for change in delete_orphaned_hpas(self.api_client, namespace, chart_model):
                    log.info("%s/%s: %s", namespace, chart_model, change)
                isvc = self._isvc(namespace, chart_model)
                if registered in in_sync:
                    for change in release(self.api_client, isvc, in_sync[registered]):
                        log.info("%s/%s: %s", namespace, chart_model, change)
                verdict = observe(
                    isvc,
                    self.registry.read(registered),
                    self.canary_aliases,
                    self.canary_stages,
                    self.open_pull_request(chart_model),
                )
                record(self.api_client, isvc, verdict, self.metrics.phase)
            except (RollbackError, kubernetes.client.ApiException, RuntimeError) as error:
                log.warning("%s/%s: not tidied: %s", namespace, chart_model, error)

    def _hold(self, isvc: dict, version: str) -> list[str]:
        try:
            return hold(self.api_client, isvc, version)
        except HoldError as error:
            log.error("%s: GitOps not held, Flux may re-apply the canary: %s", model_key(isvc), error)
            return [f"could not hold GitOps ({error})"]

    def _isvc(self, namespace: str, name: str) -> dict:
        custom = kubernetes.client.CustomObjectsApi(self.api_client)
        try:
            return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except kubernetes.client.ApiException as error:
            raise RollbackError(
                f"reading InferenceService {namespace}/{name}: {error.status} {error.reason}", status=error.status
            ) from error


def evidence(request: RollbackRequest) -> str:
    """The tag value: the same for every delivery of one alert, so a repeat writes nothing new."""
    return json.dumps(
        {"alert": request.alertname, "since": request.starts_at, "summary": request.summary}, sort_keys=True
    )
