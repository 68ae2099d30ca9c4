"""The Flux hold (monitoring/rollback/gitops.py) against real Kustomizations in the API server with Flux's CRDs
(the `flux` fixture): which holds suspend and resume what, and that repeats change nothing. The objects handed to
hold/release are InferenceService metadata as Flux labels it; the whole loop with Flux acting on a real repository
is test_k8s_gitops_loop."""

from __future__ import annotations

import json
import uuid

import pytest
from flux import KUSTOMIZE, NAMESPACE, SOURCE, Flux
from kube import server_side_apply

from tickserve.monitoring.rollback.gitops import (
    HOLDS_ANNOTATION,
    REQUESTED_AT,
    FluxObject,
    HoldError,
    hold,
    holds_of,
    release,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def kustomization(flux: Flux, *, suspended: bool = False, source: dict | None = None) -> str:
    """A Kustomization whose source does not exist (an OCIRepository unless told), so Flux never applies anything
    for it; the hold does not check the revision of sources other than a GitRepository."""
    name = f"hold-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"interval": "10m", "path": "./", "prune": True, "suspend": suspended,
                 "sourceRef": source or {"kind": "OCIRepository", "name": "absent"}},
    }  # fmt: skip
    server_side_apply(flux.control_plane, json.dumps(body))
    return name


def applied_by(owner: str, model: str, namespace: str = "prod") -> dict:
    return {"metadata": {"name": model, "namespace": namespace, "labels": {
        "kustomize.toolkit.fluxcd.io/name": owner, "kustomize.toolkit.fluxcd.io/namespace": NAMESPACE}}}  # fmt: skip


def test_the_last_released_hold_resumes_the_kustomization_and_requests_a_reconcile(flux: Flux) -> None:
    name = kustomization(flux)
    first, second = applied_by(name, "ticks-1m"), applied_by(name, "ticks-5m")
    api = flux.api_client

    assert hold(api, first, "2") == [
        f"held Kustomization {NAMESPACE}/{name} (suspended until the revert of v2 is merged)"
    ]
    assert hold(api, first, "2") == [], "a repeat changes nothing"
    assert hold(api, second, "7")
    held = flux.get(KUSTOMIZE, name)
    assert held["spec"]["suspend"] is True
    assert holds_of(held) == {"holds": {"prod/ticks-1m": "2", "prod/ticks-5m": "7"}, "resume": True}

    assert release(api, first, COMMIT) == [f"released the hold of prod/ticks-1m on Kustomization {NAMESPACE}/{name}; "
                                   "it stays suspended"]  # fmt: skip
    assert flux.get(KUSTOMIZE, name)["spec"]["suspend"] is True, "ticks-5m still holds it"
    assert release(api, first, COMMIT) == []
    assert release(api, second, COMMIT)
    resumed = flux.get(KUSTOMIZE, name)
    assert resumed["spec"]["suspend"] is False
    assert HOLDS_ANNOTATION not in resumed["metadata"]["annotations"]
    assert REQUESTED_AT in resumed["metadata"]["annotations"]


def test_a_kustomization_someone_else_suspended_stays_suspended_after_the_hold(flux: Flux) -> None:
    name = kustomization(flux, suspended=True)
    isvc = applied_by(name, "ticks-1m")
    assert hold(flux.api_client, isvc, "3")
    assert holds_of(flux.get(KUSTOMIZE, name))["resume"] is False
    assert release(flux.api_client, isvc, COMMIT)[0].endswith("it stays suspended")
    assert flux.get(KUSTOMIZE, name)["spec"]["suspend"] is True


def test_a_hold_stays_until_the_git_repository_has_fetched_the_commit_found_in_sync(flux: Flux) -> None:
    """Resumed while its GitRepository still has the pre-merge commit, Flux would re-apply the canary: the hold waits.
    The GitRepository points at a port nothing listens on, so it never fetches anything."""
    source = f"unreachable-{uuid.uuid4().hex[:8]}"
    flux.git_repository(source, "http://127.0.0.1:9/nothing.git", "user", "token")
    name = kustomization(flux, source={"kind": "GitRepository", "name": source})
    isvc = applied_by(name, "ticks-1m")
    assert hold(flux.api_client, isvc, "2")

    kept = release(flux.api_client, isvc, COMMIT, wait_seconds=1)
    assert kept == [f"kept the hold of prod/ticks-1m on Kustomization {NAMESPACE}/{name}: GitRepository "
                    f"{NAMESPACE}/{source} has not fetched {COMMIT[:12]} yet"]  # fmt: skip
    held = flux.get(KUSTOMIZE, name)
    assert held["spec"]["suspend"] is True and holds_of(held)["holds"] == {"prod/ticks-1m": "2"}
    requested = flux.get(SOURCE, source)["metadata"]["annotations"]
    assert REQUESTED_AT in requested, "the source was asked to fetch now"


def test_an_inference_service_flux_did_not_apply_gets_no_hold(flux: Flux) -> None:
    isvc = {"metadata": {"name": "ticks-1m", "namespace": "prod", "labels": {"app": "x"}}}
    assert FluxObject.of(isvc) is None
    assert hold(flux.api_client, isvc, "2") == [] and release(flux.api_client, isvc, COMMIT) == []


def test_a_hold_on_a_missing_kustomization_fails_naming_it(flux: Flux) -> None:
    with pytest.raises(HoldError, match="Kustomization flux-system/no-such-kustomization: 404") as raised:
        hold(flux.api_client, applied_by("no-such-kustomization", "ticks-1m"), "2")
    assert raised.value.status == 404
