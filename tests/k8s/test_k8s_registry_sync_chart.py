"""The chart's registry-sync pieces (ci/registry-sync-values.yaml) on the real kube-apiserver: they apply with strict
validation, the ServiceAccount may use its own Lease and nothing else, and the rendered settings file is one that
`tickserve registry-sync` accepts (with the token from the environment, as the Deployment provides it)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kube import ControlPlane, InstalledCrds, can_i, server_side_apply
from ruamel.yaml import YAML

from tickserve.registry_sync.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tickserve"
VALUES = CHART / "ci" / "registry-sync-values.yaml"
NAME = "tickserve-registry-sync"
LEASES = {"resource": "leases", "group": "coordination.k8s.io"}


def render(helm_cli, namespace: str) -> list[dict]:
    text = helm_cli("template", "tickserve", str(CHART), "--namespace", namespace, "--values", str(VALUES)).stdout
    return [doc for doc in YAML(typ="safe").load_all(text) if doc]


def test_registry_sync_objects_apply_and_its_account_may_only_use_its_own_lease(
    control_plane: ControlPlane, crds: InstalledCrds, namespace: str, helm_cli
) -> None:
    docs = render(helm_cli, namespace)
    ours = {(d["kind"], d["metadata"]["name"]) for d in docs if d["metadata"]["name"].startswith(NAME)}
    assert ours == {
        ("ServiceAccount", NAME), ("Role", NAME), ("RoleBinding", NAME), ("ConfigMap", NAME), ("Deployment", NAME),
        ("Service", f"{NAME}-webhook"), ("NetworkPolicy", NAME), ("PodMonitor", NAME),
    }  # fmt: skip
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == NAME]
    assert deployment["spec"]["replicas"] == 2
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TICKSERVE_REGISTRY_SYNC_FORGE__TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "registry-sync-forge"
    assert (
        env["TICKSERVE_REGISTRY_SYNC_WEBHOOK__SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "registry-sync-webhook"
    )

    text = helm_cli("template", "tickserve", str(CHART), "--namespace", namespace, "--values", str(VALUES)).stdout
    applied = server_side_apply(control_plane, text, namespace=namespace)
    assert f"deployment.apps/{NAME}" in applied and f"networkpolicy.networking.k8s.io/{NAME}" in applied

    def may(verb: str, name: str = "", **resource: str) -> bool:
        return can_i(control_plane.api_client, service_account=NAME, namespace=namespace, verb=verb,
                     target_namespace=namespace, name=name, **resource)  # fmt: skip

    assert may("get", NAME, **LEASES) and may("update", NAME, **LEASES) and may("create", **LEASES)
    assert not may("update", "kube-scheduler", **LEASES) and not may("delete", NAME, **LEASES)
    assert not may("list", **LEASES)
    for verb, resource in [("get", {"resource": "secrets"}), ("patch", {"resource": "inferenceservices",
                           "group": "serving.kserve.io"}), ("list", {"resource": "pods"})]:  # fmt: skip
        assert not may(verb, **resource)


def test_the_rendered_settings_file_is_accepted_with_the_token_from_the_environment(
    helm_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (configmap,) = [
        d for d in render(helm_cli, "tickserve") if d["kind"] == "ConfigMap" and d["metadata"]["name"] == NAME
    ]
    path = tmp_path / "registry-sync.yaml"
    path.write_text(configmap["data"]["registry-sync.yaml"])
    monkeypatch.setenv("TICKSERVE_REGISTRY_SYNC_FORGE__TOKEN", "from-the-secret")
    settings = load_settings(path)
    assert settings.forge.kind == "gitea" and settings.forge.resolved_token() == "from-the-secret"
    assert settings.models[0].chart_model == "ticks-1m"


def test_a_secret_in_the_chart_config_is_refused_by_the_schema(helm_cli, tmp_path: Path) -> None:
    values = YAML(typ="safe").load(VALUES.read_text())
    values["registrySync"]["config"]["forge"]["token"] = "oops"
    leaked = tmp_path / "values.yaml"
    YAML(typ="safe").dump(values, leaked)
    result = helm_cli("template", "tickserve", str(CHART), "--values", str(leaked), check=False)
    assert result.returncode != 0 and "registrySync" in result.stderr


def test_the_rollback_receiver_runs_in_registry_sync_with_the_rollout_role_and_alertmanager_finds_it(
    control_plane: ControlPlane, crds: InstalledCrds, namespace: str, helm_cli
) -> None:
    options = [
        "--set", "registrySync.rollback.enabled=true", "--set", "registrySync.rollback.existingSecret=rollback-token",
        "--set", "monitoring.alertmanagerConfig.enabled=true",
        "--set", "monitoring.alertmanagerConfig.rollback.tokenSecret.name=rollback-token",
    ]  # fmt: skip
    text = helm_cli(
        "template", "tickserve", str(CHART), "--namespace", namespace, "--values", str(VALUES), *options
    ).stdout
    docs = [doc for doc in YAML(typ="safe").load_all(text) if doc]
    server_side_apply(control_plane, text, namespace=namespace)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == NAME]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["TICKSERVE_REGISTRY_SYNC_ROLLBACK__TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "rollback-token"
    assert {"name": "rollback", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    (route,) = [d for d in docs if d["kind"] == "AlertmanagerConfig"]
    receiver = next(r for r in route["spec"]["receivers"] if r["name"] == "tickserve-rollback")
    assert receiver["webhookConfigs"][0]["url"] == f"http://{NAME}-rollback.{namespace}.svc:8080/alerts"
    isvcs = {"resource": "inferenceservices", "group": "serving.kserve.io"}
    hpas = {"resource": "horizontalpodautoscalers", "group": "autoscaling"}

    def may(verb: str, resource: dict[str, str]) -> bool:
        return can_i(
            control_plane.api_client, service_account=NAME, namespace=namespace, target_namespace=namespace,
            verb=verb, **resource,
        )  # fmt: skip

    assert may("patch", isvcs)
    assert may("delete", hpas)
    assert not may("delete", isvcs)


def test_the_flux_hold_may_suspend_kustomizations_and_refresh_sources_in_flux_s_namespace_only(
    control_plane: ControlPlane, crds: InstalledCrds, namespace: str, helm_cli
) -> None:
    flux_namespace = f"flux-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", flux_namespace)
    options = [
        "--set", "registrySync.rollback.enabled=true", "--set", "registrySync.rollback.existingSecret=rollback-token",
        "--set", "registrySync.rollback.fluxHold.enabled=true",
        "--set", f"registrySync.rollback.fluxHold.namespace={flux_namespace}",
    ]  # fmt: skip
    text = helm_cli(
        "template", "tickserve", str(CHART), "--namespace", namespace, "--values", str(VALUES), *options
    ).stdout
    server_side_apply(control_plane, text)  # objects in two namespaces: each says its own
    (deployment,) = [d for d in YAML(typ="safe").load_all(text) if d and d["kind"] == "Deployment" and
                     d["metadata"]["name"] == NAME]  # fmt: skip
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TICKSERVE_REGISTRY_SYNC_ROLLBACK__HOLD_FLUX"] == "true"
    kustomizations = {"resource": "kustomizations", "group": "kustomize.toolkit.fluxcd.io"}
    sources = {"resource": "gitrepositories", "group": "source.toolkit.fluxcd.io"}

    def may(verb: str, resource: dict[str, str], target: str) -> bool:
        return can_i(control_plane.api_client, service_account=NAME, namespace=namespace, target_namespace=target,
                     verb=verb, **resource)  # fmt: skip

    for resource in (kustomizations, sources):
        assert may("get", resource, flux_namespace) and may("patch", resource, flux_namespace)
        assert not may("delete", resource, flux_namespace) and not may("patch", resource, namespace)
