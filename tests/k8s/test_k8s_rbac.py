"""Least privilege, asked of the real RBAC authorizer (SubjectAccessReviews) after `helm install` of the chart:
every ServiceAccount may do what its workload needs and nothing else - no secrets, no other namespace, no
cluster scope."""

from __future__ import annotations

from pathlib import Path

import pytest
from kube import ControlPlane, InstalledCrds, can_i

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tickserve"
SERVING_ACCOUNTS = ("predictor", "transformer", "ingest", "redis")
ISVC = {"resource": "inferenceservices", "group": "serving.kserve.io"}
HPA = {"resource": "horizontalpodautoscalers", "group": "autoscaling"}

# (verb, resource attributes) every account is denied in its own namespace.
DENIED_EVERYWHERE = [
    ("get", {"resource": "secrets"}),
    ("list", {"resource": "secrets"}),
    ("watch", {"resource": "secrets"}),
    ("get", {"resource": "configmaps"}),
    ("list", {"resource": "pods"}),
    ("create", {"resource": "pods", "subresource": "exec"}),
    ("create", {"resource": "serviceaccounts", "subresource": "token"}),
    ("create", ISVC),
    ("delete", ISVC),
    ("patch", {"resource": "deployments", "group": "apps"}),
    ("create", HPA),
    ("patch", HPA),
    ("create", {"resource": "rolebindings", "group": "rbac.authorization.k8s.io"}),
    ("escalate", {"resource": "roles", "group": "rbac.authorization.k8s.io"}),
]
CLUSTER_SCOPE = [
    ("list", {"resource": "nodes"}),
    ("list", {"resource": "namespaces"}),
    ("create", {"resource": "clusterrolebindings", "group": "rbac.authorization.k8s.io"}),
    ("list", ISVC),  # all namespaces
    ("list", {"resource": "secrets"}),  # all namespaces
]
ROLLOUT_NEEDS = [
    ("get", ISVC),
    ("list", ISVC),
    ("watch", ISVC),
    ("patch", ISVC),
    ("update", ISVC),
    ("get", {**ISVC, "subresource": "status"}),
    ("create", {"resource": "events"}),
    # The rollback deletes the HPA KServe v0.20.0 leaves behind a removed canary (monitoring/rollback/cluster.py).
    ("list", HPA),
    ("delete", HPA),
]


@pytest.fixture
def release(control_plane: ControlPlane, crds: InstalledCrds, namespace: str) -> str:
    control_plane.helm("install", "tickserve", str(CHART), "--namespace", namespace)
    return namespace


def allowed(control_plane: ControlPlane, namespace: str, account: str, verb: str, target: str | None, **attrs) -> bool:
    return can_i(
        control_plane.api_client,
        service_account=f"tickserve-{account}",
        namespace=namespace,
        verb=verb,
        target_namespace=target,
        **attrs,
    )


def test_every_workload_has_its_own_service_account(control_plane: ControlPlane, release: str) -> None:
    names = control_plane.kubectl("get", "serviceaccounts", "-n", release, "-o", "name").stdout.split()
    assert {f"serviceaccount/tickserve-{account}" for account in (*SERVING_ACCOUNTS, "rollout")} <= set(names)


@pytest.mark.parametrize("account", SERVING_ACCOUNTS)
def test_serving_accounts_may_do_nothing_with_the_api(control_plane: ControlPlane, release: str, account: str) -> None:
    """Predictor, transformer, ingest and Redis never call the Kubernetes API: every request is denied and no
    token is mounted into their pods."""
    for verb, attrs in [*DENIED_EVERYWHERE, *ROLLOUT_NEEDS]:
        assert not allowed(control_plane, release, account, verb, release, **attrs), (account, verb, attrs)
    for verb, attrs in CLUSTER_SCOPE:
        assert not allowed(control_plane, release, account, verb, None, **attrs), (account, verb, attrs)
    sa = control_plane.kubectl("get", "serviceaccount", f"tickserve-{account}", "-n", release, "-o", "json").stdout
    assert '"automountServiceAccountToken": false' in sa


def test_rollout_account_may_move_traffic_in_its_namespace(control_plane: ControlPlane, release: str) -> None:
    for verb, attrs in ROLLOUT_NEEDS:
        assert allowed(control_plane, release, "rollout", verb, release, **attrs), (verb, attrs)


def test_rollout_account_is_denied_everything_else(control_plane: ControlPlane, release: str) -> None:
    for verb, attrs in DENIED_EVERYWHERE:
        assert not allowed(control_plane, release, "rollout", verb, release, **attrs), (verb, attrs)
    for verb, attrs in CLUSTER_SCOPE:
        assert not allowed(control_plane, release, "rollout", verb, None, **attrs), (verb, attrs)
    for verb, attrs in ROLLOUT_NEEDS:
        assert not allowed(control_plane, release, "rollout", verb, "kserve", **attrs), (verb, attrs)


def test_rbac_off_creates_no_role(control_plane: ControlPlane, crds: InstalledCrds, namespace: str) -> None:
    control_plane.helm("install", "tickserve", str(CHART), "--namespace", namespace, "--set", "rollout.rbac=false")
    assert control_plane.kubectl("get", "roles,rolebindings", "-n", namespace, "-o", "name").stdout.strip() == ""
    assert not allowed(control_plane, namespace, "rollout", "patch", namespace, **ISVC)
