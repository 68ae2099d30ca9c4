"""Keep a GitOps engine from undoing a rollback before its revert is merged: the Flux hold.

A rollback patches the cluster at once, but git still deploys the bad canary until someone merges the revert pull
request. Flux re-applies git at every reconcile (its drift correction, like Argo CD's self-heal), so left alone it
would put the canary back within one interval. The rollback therefore *holds* the Flux Kustomization that applied
the InferenceService: before the cluster step it sets `spec.suspend: true` and records why in one annotation,

    tickserve.io/rollback-holds: {"holds": {"<namespace>/<model>": "<version>"}, "resume": true}

When a registry-sync pass finds git in sync for that model (the revert was merged, or a newer canary that replaced
it), the model's hold is released once Flux's GitRepository has fetched that commit (resumed earlier, Flux would
apply its older artifact, the canary, for a moment); releasing the last one resumes the Kustomization, but only if
the hold was what suspended it (`resume`), and requests a reconcile so the merged state is applied at once.

The trade-off, stated where it is chosen: while a hold stands, that Kustomization applies nothing, so other changes
to its path wait for the revert to be merged. The alternative, the receiver merging its own revert, keeps GitOps
moving but skips review and still leaves a window until Flux fetches the merge. Operators see a hold on the
Kustomization (`flux get kustomizations` shows it suspended, the annotation says for which versions), in
`tickserve rollout status` (GITOPS HOLD) and in the rollback's log line; removing the annotation and `flux resume`
ends it by hand.

Which Kustomization: the one Flux names in the labels it puts on every object it applies. An InferenceService
without them is not applied by Flux and gets no hold. Updates carry the resourceVersion read, so two receivers
acting at once re-read instead of overwriting each other (409), and a repeat changes nothing. RBAC: get and patch
`kustomizations.kustomize.toolkit.fluxcd.io` and `gitrepositories.source.toolkit.fluxcd.io` in Flux's namespace
(the chart's `registrySync.rollback.fluxHold` Role).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes

GROUP, VERSION, PLURAL = "kustomize.toolkit.fluxcd.io", "v1", "kustomizations"
SOURCE, SOURCE_PLURAL = ("source.toolkit.fluxcd.io", "v1"), "gitrepositories"
NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
HOLDS_ANNOTATION = "tickserve.io/rollback-holds"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
ATTEMPTS = 3
# Computes a merge patch from (the Kustomization, its hold record); None when nothing needs changing.
Change = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]


class HoldError(RuntimeError):
    """The Kustomization could not be read or updated; `status` is the API server's HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FluxObject:
    """A Flux object by kind, namespace and name: the Kustomization that applied an object (`of`), or the
    GitRepository a Kustomization applies (`source_of`)."""

    namespace: str
    name: str
    kind: str = "Kustomization"

    @classmethod
    def of(cls, obj: dict[str, Any]) -> FluxObject | None:
        labels = obj["metadata"].get("labels") or {}
        if NAME_LABEL in labels and NAMESPACE_LABEL in labels:
            return cls(labels[NAMESPACE_LABEL], labels[NAME_LABEL])
        return None

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def hold(api_client: kubernetes.client.ApiClient, isvc: dict[str, Any], version: str) -> list[str]:
    """Suspend the Kustomization that applied `isvc` and record the hold for its model at `version`; returns what
    changed (nothing when the hold already stands, or when Flux did not apply the InferenceService)."""
    owner = FluxObject.of(isvc)
    if owner is None:
        return []
    key = model_key(isvc)

    def change(kustomization: dict[str, Any], holds: dict[str, Any]) -> dict[str, Any] | None:
        suspended = bool(kustomization["spec"].get("suspend"))
        if holds["holds"].get(key) == version and suspended:
            return None
        if not holds["holds"]:
            holds["resume"] = not suspended  # resume later only what the hold itself suspended
        holds["holds"][key] = version
        return {"metadata": {"annotations": {HOLDS_ANNOTATION: json.dumps(holds, sort_keys=True)}},
                "spec": {"suspend": True}}  # fmt: skip

    if _update(api_client, owner, change):
        return [f"held {owner} (suspended until the revert of v{version} is merged)"]
    return []


def release(
    api_client: kubernetes.client.ApiClient, isvc: dict[str, Any], revision: str, wait_seconds: float = 10.0
) -> list[str]:
    """Release the model's hold, as git's commit `revision` deploys what the registry asks for; the last hold
    released resumes the Kustomization (when the hold suspended it) and requests a reconcile. Returns what changed.

    Flux applies what its source fetched last, which may predate the merge: resumed before the GitRepository has
    `revision`, it would re-apply the rolled-back canary for a moment (and KServe would leave the canary's HPA
    behind). So the source is asked to fetch first and the hold stays until its artifact is `revision`, waiting up
    to `wait_seconds`; a later pass tries again. Sources other than a GitRepository are not checked."""
    owner = FluxObject.of(isvc)
    if owner is None:
        return []
    key = model_key(isvc)
    kustomization = _get(api_client, owner)
    if key not in holds_of(kustomization)["holds"]:
        return []
    source = source_of(kustomization)
    if source is not None and not _fetched(api_client, source, revision, wait_seconds):
        return [f"kept the hold of {key} on {owner}: {source} has not fetched {revision[:12]} yet"]
    resumed = False

    def change(kustomization: dict[str, Any], holds: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal resumed
        if key not in holds["holds"]:
            return None
        del holds["holds"][key]
        if holds["holds"]:
            return {"metadata": {"annotations": {HOLDS_ANNOTATION: json.dumps(holds, sort_keys=True)}}}
        resumed = holds.get("resume", True)
        patch: dict[str, Any] = {"metadata": {"annotations": {HOLDS_ANNOTATION: None, REQUESTED_AT: _now()}}}
        if resumed:
            patch["spec"] = {"suspend": False}
        return patch

    if not _update(api_client, owner, change):
        return []
    return [f"released the hold of {key} on {owner}" + (", resumed it" if resumed else "; it stays suspended")]


def source_of(kustomization: dict[str, Any]) -> FluxObject | None:
    """The GitRepository a Kustomization applies (None for other source kinds)."""
    ref = kustomization["spec"].get("sourceRef") or {}
    if ref.get("kind") != "GitRepository":
        return None
    return FluxObject(ref.get("namespace") or kustomization["metadata"]["namespace"], ref["name"], "GitRepository")


def held(api_client: kubernetes.client.ApiClient, isvc: dict[str, Any]) -> str | None:
    """'v2 on Kustomization flux-system/prod' when a rollback hold for the model stands; None otherwise."""
    owner = FluxObject.of(isvc)
    if owner is None:
        return None
    version = holds_of(_get(api_client, owner))["holds"].get(model_key(isvc))
    return f"v{version} on {owner}" if version else None


def model_key(isvc: dict[str, Any]) -> str:
    return f"{isvc['metadata']['namespace']}/{isvc['metadata']['name']}"


def holds_of(kustomization: dict[str, Any]) -> dict[str, Any]:
    """The hold record of a Kustomization: {"holds": {model key: version}, "resume": bool}; empty when none."""
    text = (kustomization["metadata"].get("annotations") or {}).get(HOLDS_ANNOTATION)
    if not text:
        return {"holds": {}, "resume": True}
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        record = {}
    return {"holds": dict(record.get("holds") or {}), "resume": bool(record.get("resume", True))}


def _fetched(api_client: kubernetes.client.ApiClient, source: FluxObject, revision: str, wait_seconds: float) -> bool:
    """Ask the GitRepository to fetch now and wait until its artifact is the commit `revision`."""
    custom = kubernetes.client.CustomObjectsApi(api_client)
    try:
        custom.patch_namespaced_custom_object(
            *SOURCE, source.namespace, SOURCE_PLURAL, source.name, {"metadata": {"annotations": {REQUESTED_AT: _now()}}}
        )
        deadline = time.monotonic() + wait_seconds
        while True:
            status = custom.get_namespaced_custom_object(*SOURCE, source.namespace, SOURCE_PLURAL, source.name)
            if revision in ((status.get("status") or {}).get("artifact") or {}).get("revision", ""):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
    except kubernetes.client.ApiException as error:
        raise HoldError(f"reading {source}: {error.status} {error.reason}", status=error.status) from error


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _get(api_client: kubernetes.client.ApiClient, owner: FluxObject) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(api_client)
    try:
        return custom.get_namespaced_custom_object(GROUP, VERSION, owner.namespace, PLURAL, owner.name)
    except kubernetes.client.ApiException as error:
        raise HoldError(f"reading {owner}: {error.status} {error.reason}", status=error.status) from error


def _update(api_client: kubernetes.client.ApiClient, owner: FluxObject, change: Change) -> bool:
    """Read the Kustomization, let `change(kustomization, holds)` compute a merge patch (None: nothing to do) and
    apply it conditioned on the resourceVersion read; on a conflict, read again. True when a patch was applied."""
    custom = kubernetes.client.CustomObjectsApi(api_client)
    for attempt in range(ATTEMPTS):
        kustomization = _get(api_client, owner)
        patch = change(kustomization, holds_of(kustomization))
        if patch is None:
            return False
        patch["metadata"]["resourceVersion"] = kustomization["metadata"]["resourceVersion"]
        try:
            custom.patch_namespaced_custom_object(GROUP, VERSION, owner.namespace, PLURAL, owner.name, patch)
            return True
        except kubernetes.client.ApiException as error:
            if error.status == 409 and attempt + 1 < ATTEMPTS:
                continue
            raise HoldError(f"updating {owner}: {error.status} {error.reason}", status=error.status) from error
    raise AssertionError("unreachable: the last attempt raises")
