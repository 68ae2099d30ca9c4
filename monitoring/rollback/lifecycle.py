"""Each model's canary as one explicit state machine, recorded where operators look.

Phases (Flagger-style, typed): `Idle` (no canary, nothing proposed), `Proposed` (a registry-sync pull request is
open), `Progressing` (the cluster serves a canary with traffic), `Promoted` (the stable version arrived through a
promotion and no canary runs), `RolledBack` (the canary version was rolled back and the registry names no newer
canary). The phase is derived from the world on every look (level-triggered: registry, open pull requests,
InferenceService), never stored as the source of truth; `record` writes it, with the reason for the last
transition, in one place: InferenceService annotations, an Event per transition and the `tickserve_rollout_phase`
gauge.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import kubernetes
from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from tickserve.monitoring.rollback.cluster import GROUP, PLURAL, VERSION, deployment_mode
from tickserve.registry_sync.planner import ROLLBACK_TAG
from tickserve.registry_sync.registry import ModelState

PHASE_ANNOTATION = "tickserve.io/rollout-phase"
REASON_ANNOTATION = "tickserve.io/rollout-reason"
VERSION_LABEL = "tickserve.io/model-version"
STABLE_VERSION_ANNOTATION = "tickserve.io/stable-version"  # the chart's; Knative keeps stable only as a revision

PR_TAG = "tickserve.pr"
COMPONENT = "tickserve-rollout"


class Phase(StrEnum):
    IDLE = "Idle"
    PROPOSED = "Proposed"
    PROGRESSING = "Progressing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"


@dataclass(frozen=True)
class Deployed:
    """What the InferenceService serves: stable and canary version (from the pod labels the chart sets) and the
    canary's traffic share."""

    stable: str | None
    canary: str | None
    traffic: int

    @classmethod
    def of(cls, isvc: dict[str, Any]) -> Deployed:
        spec = isvc.get("spec") or {}
        predictor = spec.get("predictor") or {}
        version = (predictor.get("labels") or {}).get(VERSION_LABEL)
        if deployment_mode(isvc) == "Knative":
            # Knative: spec.predictor is the newest revision; with canaryTrafficPercent set it is the canary.
            traffic = predictor.get("canaryTrafficPercent")
            if traffic is None:
                return cls(stable=version, canary=None, traffic=0)
            previous = (isvc.get("metadata", {}).get("annotations") or {}).get(STABLE_VERSION_ANNOTATION)
            return cls(stable=previous, canary=version, traffic=int(traffic))
        canaries = spec.get("canary") or []
        if not canaries:
            return cls(stable=version, canary=None, traffic=0)
        first = canaries[0]
        canary_version = ((first.get("predictor") or {}).get("labels") or {}).get(VERSION_LABEL)
        return cls(stable=version, canary=canary_version, traffic=int(first.get("trafficPercent", 0)))


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: str


def decide(
    deployed: Deployed,
    version_tags: dict[str, dict[str, str]],
    named_canary: str | None,
    open_pull_request: str | None,
) -> Verdict:
    """The phase from what is observed. `version_tags`: registry version -> its tags; `named_canary`: the version
    the registry names as canary now (alias or stage), if any; `open_pull_request`: an open PR's link."""
    rolled_back = sorted(
        (version for version, tags in version_tags.items() if ROLLBACK_TAG in tags), key=_version_order
    )
    latest_rollback = rolled_back[-1] if rolled_back else None
    newer_canary = named_canary is not None and named_canary not in rolled_back
    canary_gone = deployed.canary is None or (deployed.canary == latest_rollback and deployed.traffic == 0)
    if latest_rollback is not None and not newer_canary and canary_gone:
        return Verdict(Phase.ROLLED_BACK, f"v{latest_rollback}: {version_tags[latest_rollback][ROLLBACK_TAG]}")
    if open_pull_request:
        return Verdict(Phase.PROPOSED, f"pull request open: {open_pull_request}")
    if deployed.canary is not None and deployed.traffic > 0:
        return Verdict(Phase.PROGRESSING, f"canary v{deployed.canary} at {deployed.traffic}% beside v{deployed.stable}")
    if deployed.stable is not None and PR_TAG in version_tags.get(deployed.stable, {}):
        return Verdict(Phase.PROMOTED, f"v{deployed.stable} promoted through {version_tags[deployed.stable][PR_TAG]}")
    return Verdict(Phase.IDLE, f"v{deployed.stable} stable, no canary" if deployed.stable else "nothing deployed")


def observe(
    isvc: dict[str, Any],
    state: ModelState,
    canary_aliases: Sequence[str],
    canary_stages: Sequence[str],
    open_pull_request: str | None,
) -> Verdict:
    """`decide` over an InferenceService and the registry's model: the version named canary is the one holding
    a canary alias, else one in a canary stage."""
    named = next((v.version for v in state.versions if set(v.aliases) & set(canary_aliases)), None)
    named = named or next((v.version for v in state.versions if v.stage in canary_stages), None)
    tags = {v.version: dict(v.tags) for v in state.versions}
    return decide(Deployed.of(isvc), tags, named, open_pull_request)


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)


class PhaseMetric:
    """`tickserve_rollout_phase{namespace, model, phase}`: 1 for the model's current phase, 0 for the others."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.gauge = Gauge(
            "tickserve_rollout_phase", "Canary lifecycle phase (1 = current)", ["namespace", "model", "phase"],
            registry=registry,
        )  # fmt: skip

    def set(self, namespace: str, model: str, phase: Phase) -> None:
        for each in Phase:
            self.gauge.labels(namespace, model, each.value).set(1.0 if each is phase else 0.0)


def record(
    api_client: kubernetes.client.ApiClient, isvc: dict[str, Any], verdict: Verdict, metric: PhaseMetric
) -> bool:
    """Write the verdict on the InferenceService (annotations) and, when the phase or reason changed, one Event;
    True when something changed. An Event's name derives from the transition, so a repeat writes none."""
    metadata = isvc["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    metric.set(namespace, name, verdict.phase)
    annotations = metadata.get("annotations") or {}
    if annotations.get(PHASE_ANNOTATION) == verdict.phase and annotations.get(REASON_ANNOTATION) == verdict.reason:
        return False
    patch = {"metadata": {"annotations": {PHASE_ANNOTATION: verdict.phase.value, REASON_ANNOTATION: verdict.reason}}}
    kubernetes.client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, patch
    )
    emit_event(api_client, isvc, verdict.phase.value, verdict.reason)
    return True


def emit_event(api_client: kubernetes.client.ApiClient, isvc: dict[str, Any], reason: str, message: str) -> bool:
    """One Event on the InferenceService, named after (object, reason, message): a second call with the same
    content finds it (409) and writes nothing. True when it was created now."""
    metadata = isvc["metadata"]
    digest = hashlib.sha256(f"{metadata.get('uid')}/{reason}/{message}".encode()).hexdigest()[:12]
    now = dt.datetime.now(dt.UTC)
    event = kubernetes.client.CoreV1Event(
        metadata=kubernetes.client.V1ObjectMeta(name=f"{metadata['name']}.{digest}", namespace=metadata["namespace"]),
        involved_object=kubernetes.client.V1ObjectReference(
            api_version=f"{GROUP}/{VERSION}", kind="InferenceService", name=metadata["name"],
            namespace=metadata["namespace"], uid=metadata.get("uid"),
        ),
        reason=reason, message=message[:1024], type="Warning" if reason == Phase.ROLLED_BACK else "Normal",
        source=kubernetes.client.V1EventSource(component=COMPONENT), first_timestamp=now, last_timestamp=now, count=1,
    )  # fmt: skip
    try:
        kubernetes.client.CoreV1Api(api_client).create_namespaced_event(metadata["namespace"], event)
    except kubernetes.client.ApiException as error:
        if error.status == 409:
            return False
        raise
    return True
