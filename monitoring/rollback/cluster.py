"""The cluster step of a canary rollback: take the canary's traffic away and leave nothing of it behind.

Standard mode (KServe `spec.canary[]`): remove the canary entries. KServe v0.20.0 then deletes each canary's
Deployment and Service and restores the stable HPA's minReplicas, but it leaves the canary's HorizontalPodAutoscaler:
it sets no owner reference on it (so garbage collection never removes it) and its orphan cleanup covers Deployments
and Services only, so a later canary of the same version inherits the stale HPA. This step therefore waits until
KServe has reconciled the removal (the canary is gone from `status.canaryStatuses`, so no reconcile of the old spec
can recreate the HPA) and then deletes every predictor HPA of the InferenceService that no predictor in its spec
accounts for, the way KServe itself prunes Deployments and Services. A promotion (stable renamed to the canary's
version, canary removed) leaves the previous stable version's HPA the same way; `delete_orphaned_hpas` removes it.

Knative mode: set `spec.predictor.canaryTrafficPercent` to 0, which sends all traffic to the previous (stable)
revision; the canary's revision stays, so raising the percentage again resumes the canary.

Idempotent: each call reads the InferenceService and changes only what is still there, so a second call changes
nothing and says so. Every patch carries a JSON-patch `test` of the values read, so a concurrent change makes the
call re-read instead of overwriting it. RBAC needed (the chart's `rollout` Role): get and patch
`inferenceservices`; list and delete `horizontalpodautoscalers` (autoscaling) for the HPA cleanup.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import kubernetes

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
# Labels KServe puts on every object of an InferenceService's predictor (Deployments, Services, HPAs).
ISVC_LABEL = "serving.kserve.io/inferenceservice"
COMPONENT_LABEL = "component"
KNATIVE_MODES = frozenset({"Knative", "Serverless"})  # Serverless: KServe's name for Knative mode before v0.15
JSON_PATCH = "application/json-patch+json"
# A JSON-patch `test` that no longer holds means someone changed the InferenceService since we read it: re-read.
PATCH_ATTEMPTS = 3


class RollbackError(RuntimeError):
    """The rollback could not be applied; `status` is the API server's HTTP status when it refused."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RollbackResult:
    """What one call changed, in order; `changes` is empty when the canary was already rolled back."""

    namespace: str
    name: str
    mode: str
    changes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def __str__(self) -> str:
        what = "; ".join(self.changes) if self.changes else "already rolled back, nothing changed"
        return f"{self.namespace}/{self.name} ({self.mode} mode): {what}"


def roll_back_canary(
    api_client: kubernetes.client.ApiClient, namespace: str, name: str, *, settle_timeout: float = 60.0
) -> RollbackResult:
    """Roll back the canary of InferenceService `namespace/name` (see the module docstring for what each mode does).

    `settle_timeout` bounds the wait for KServe to reconcile a Standard-mode canary removal before the HPA cleanup;
    when KServe does not get there in time, RollbackError says so and a later call finishes the cleanup.
    """
    isvc = _get(api_client, namespace, name)
    mode = deployment_mode(isvc)
    if mode == "Knative":
        changes = _zero_canary_traffic(api_client, isvc)
    else:
        changes = _remove_canaries(api_client, isvc, settle_timeout)
        changes += delete_orphaned_hpas(api_client, namespace, name)
    return RollbackResult(namespace=namespace, name=name, mode=mode, changes=tuple(changes))


def deployment_mode(isvc: dict[str, Any]) -> str:
    """The deployment mode, Knative or Standard, from the deploymentMode annotation (the chart always sets it);
    without one, a `spec.canary` list can only be Standard mode and anything else is treated as Knative."""
    annotation = (isvc["metadata"].get("annotations") or {}).get(DEPLOYMENT_MODE_ANNOTATION)
    if annotation is None:
        return "Standard" if isvc["spec"].get("canary") else "Knative"
    return "Knative" if annotation in KNATIVE_MODES else "Standard"


def predictor_names(isvc: dict[str, Any]) -> set[str]:
    """Names of the predictor Deployments (and their HPAs) the spec accounts for: `{isvc}-{name}-predictor` for the
    stable predictor and each canary, `{isvc}-predictor` for an unnamed stable predictor (KServe's naming)."""
    name = isvc["metadata"]["name"]
    spec = isvc["spec"]
    named = [spec["predictor"].get("name", "")] + [canary["predictor"]["name"] for canary in spec.get("canary") or []]
    return {f"{name}-{predictor}-predictor" if predictor else f"{name}-predictor" for predictor in named}


def delete_orphaned_hpas(api_client: kubernetes.client.ApiClient, namespace: str, name: str) -> list[str]:
    """Delete the predictor HPAs of InferenceService `name` that no predictor of its current spec accounts for and
    return what was deleted. KServe v0.20.0 leaves them behind after a canary is removed (the canary's HPA) and after
    a promotion (the previous stable version's HPA, still owned by the InferenceService, so garbage collection keeps
    it as long as the InferenceService lives). Call it once KServe has reconciled the current spec; roll_back_canary
    waits for that itself. Each delete is preconditioned on the UID read, so an HPA recreated meanwhile stays."""
    isvc = _get(api_client, namespace, name)
    expected = predictor_names(isvc)
    autoscaling = kubernetes.client.AutoscalingV2Api(api_client)
    selector = f"{ISVC_LABEL}={name},{COMPONENT_LABEL}=predictor"
    try:
        hpas = autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace, label_selector=selector).items
    except kubernetes.client.ApiException as error:
        raise _api_error(f"listing the predictor HPAs of {namespace}/{name}", error) from error
    deleted = []
    for hpa in hpas:
        if hpa.metadata.name in expected:
            continue
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=hpa.metadata.uid)
        )
        try:
            autoscaling.delete_namespaced_horizontal_pod_autoscaler(hpa.metadata.name, namespace, body=options)
        except kubernetes.client.ApiException as error:
            if error.status in (404, 409):  # gone already, or replaced by a newer one: not ours to delete
                continue
            raise _api_error(f"deleting HorizontalPodAutoscaler {namespace}/{hpa.metadata.name}", error) from error
        deleted.append(f"deleted orphaned HorizontalPodAutoscaler {hpa.metadata.name}")
    return deleted


def _remove_canaries(api_client: kubernetes.client.ApiClient, isvc: dict[str, Any], settle_timeout: float) -> list[str]:
    namespace, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
    for attempt in range(PATCH_ATTEMPTS):
        canaries = isvc["spec"].get("canary") or []
        if not canaries:
            return []
        patch = [{"op": "test", "path": "/spec/canary", "value": canaries}, {"op": "remove", "path": "/spec/canary"}]
        if _patch(api_client, isvc, patch, last_attempt=attempt + 1 == PATCH_ATTEMPTS):
            removed = [canary["predictor"]["name"] for canary in canaries]
            _wait_canaries_reconciled(api_client, namespace, name, removed, settle_timeout)
            return [
                f"removed canary {canary['predictor']['name']} ({canary.get('trafficPercent', 0)}% of traffic)"
                for canary in canaries
            ]
        isvc = _get(api_client, namespace, name)
    raise AssertionError("unreachable: the last attempt raises")


def _zero_canary_traffic(api_client: kubernetes.client.ApiClient, isvc: dict[str, Any]) -> list[str]:
    namespace, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
    path = "/spec/predictor/canaryTrafficPercent"
    for attempt in range(PATCH_ATTEMPTS):
        percent = isvc["spec"]["predictor"].get("canaryTrafficPercent")
        if not percent:  # absent (no canary) or already 0
            return []
        patch = [{"op": "test", "path": path, "value": percent}, {"op": "replace", "path": path, "value": 0}]
        if _patch(api_client, isvc, patch, last_attempt=attempt + 1 == PATCH_ATTEMPTS):
            return [f"set canaryTrafficPercent {percent} -> 0 (all traffic to the previous revision)"]
        isvc = _get(api_client, namespace, name)
    raise AssertionError("unreachable: the last attempt raises")


def _patch(
    api_client: kubernetes.client.ApiClient, isvc: dict[str, Any], patch: list[dict], *, last_attempt: bool
) -> bool:
    """Apply a JSON patch; False when its `test` failed (the object changed since it was read) and a retry is left."""
    namespace, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
    custom = kubernetes.client.CustomObjectsApi(api_client)
    try:
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch, _content_type=JSON_PATCH)
    except kubernetes.client.ApiException as error:
        # 422 is how the API server answers a JSON patch whose `test` fails (its message does not say which op).
        if error.status == 422 and not last_attempt:
            return False
        raise _api_error(f"patching InferenceService {namespace}/{name}", error) from error
    return True


def _wait_canaries_reconciled(
    api_client: kubernetes.client.ApiClient, namespace: str, name: str, removed: list[str], timeout: float
) -> None:
    """Wait until KServe reports none of the removed canaries in `status.canaryStatuses`: it writes that status at
    the end of the reconcile that saw the removal, and reconciles of one object never overlap, so after that no
    reconcile of the old spec can recreate a canary's HPA."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = (_get(api_client, namespace, name).get("status") or {}).get("canaryStatuses") or []
        still = sorted({status.get("name") for status in statuses} & set(removed))
        if not still:
            return
        if time.monotonic() > deadline:
            raise RollbackError(
                f"InferenceService {namespace}/{name}: canary removed from the spec, but KServe still reports "
                f"{still} after {timeout:.0f}s; their HPAs are left until a later roll_back_canary call"
            )
        time.sleep(0.2)


def _get(api_client: kubernetes.client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(api_client)
    try:
        return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except kubernetes.client.ApiException as error:
        raise _api_error(f"reading InferenceService {namespace}/{name}", error) from error


def _api_error(doing: str, error: kubernetes.client.ApiException) -> RollbackError:
    return RollbackError(f"{doing}: {error.status} {error.reason}: {error.body}", status=error.status)
