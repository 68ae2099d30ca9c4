"""What KServe v0.20.0's own controller makes of the chart (the `kserve_controller` fixture): the Deployments,
Services, HPAs, Ingress and InferenceService conditions of every value set, and a Standard-mode canary's whole life
(add, step, promote, roll back with monitoring/rollback/cluster.py as the chart's rollout ServiceAccount) with
nothing left behind. No kubelet runs, so the tests write the Deployments' rollout status (mark_deployments_ready)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kserve_controller import ISVC_LABEL, KServeController, Reconciled, read, settle, wait_for
from kube import CommandFailed
from ruamel.yaml import YAML

from tickserve.monitoring.rollback.cluster import RollbackError, delete_orphaned_hpas, roll_back_canary

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tickserve"


def value_set(name: str) -> dict[str, Any]:
    return YAML(typ="safe").load((CHART / "ci" / f"{name}-values.yaml").read_text())


def helm(controller: KServeController, verb: str, namespace: str, values: dict, tmp_path: Path) -> None:
    path = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.json"
    path.write_text(json.dumps(values))
    controller.control_plane.helm(verb, "tickserve", str(CHART), "--namespace", namespace, "--values", str(path))


def as_service_account(controller: KServeController, namespace: str, account: str) -> kubernetes.client.ApiClient:
    """An ApiClient that acts as `namespace/account` (the admin impersonates it), so RBAC decides every request."""
    configuration = copy.deepcopy(controller.api_client.configuration)
    return kubernetes.client.ApiClient(
        configuration, header_name="Impersonate-User", header_value=f"system:serviceaccount:{namespace}:{account}"
    )


# --- every value set -----------------------------------------------------------------------------------------------


def kserve_names(models: list[dict]) -> set[str]:
    """The Deployments (and Services, HPAs) KServe makes for `models`: stable and canary predictors, transformer."""
    names = set()
    for model in models:
        names |= {f"{model['name']}-v{model['stable']['version']}-predictor", f"{model['name']}-transformer"}
        if model.get("canary"):
            names.add(f"{model['name']}-v{model['canary']['version']}-predictor")
    return names


def ingress_backends(state: Reconciled, isvc: str) -> dict[str, str]:
    """Host -> backend Service of the Ingress KServe made for `isvc`."""
    rules = state.ingresses[isvc]["spec"]["rules"]
    return {rule["host"]: rule["http"]["paths"][0]["backend"]["service"]["name"] for rule in rules}


def test_cpu_value_set_becomes_a_ready_predictor_and_transformer_per_model(
    kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path
) -> None:
    values = value_set("cpu")
    helm(kserve_controller, "install", kserve_namespace, values, tmp_path)
    expected = kserve_names(values["models"])
    state = settle(kserve_controller, kserve_namespace, expected)

    assert state.kserve("services") == expected
    assert state.kserve("hpas") == expected
    assert set(state.ingresses) == {model["name"] for model in values["models"]}
    for model in values["models"]:
        name, stable = model["name"], f"{model['name']}-v{model['stable']['version']}-predictor"
        assert state.hpa_range(stable) == (1, 3)  # values.yaml predictor.minReplicas / maxReplicas
        assert state.hpa_range(f"{name}-transformer") == (1, 3)
        for kind in ("Ready", "PredictorReady", "TransformerReady", "IngressReady"):
            assert state.condition(name, kind) == "True", (name, kind)
        assert state.canaries(name) == []
        assert state.isvcs[name]["status"]["url"] == f"http://{name}-{kserve_namespace}.example.com"
        # The InferenceService's host reaches the transformer. KServe v0.20.0 also routes the transformer's own host
        # to the predictor (createRawIngress), so that host bypasses the feature transformer.
        assert ingress_backends(state, name) == {
            f"{name}-{kserve_namespace}.example.com": f"{name}-transformer",
            f"{name}-transformer-{kserve_namespace}.example.com": stable,
            f"{stable}-{kserve_namespace}.example.com": stable,
        }


def test_gpu_value_set_reaches_the_predictor_deployment(
    kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path
) -> None:
    values = value_set("gpu")
    helm(kserve_controller, "install", kserve_namespace, values, tmp_path)
    state = settle(kserve_controller, kserve_namespace, kserve_names(values["models"]))

    pod = state.deployments["ticks-1m-v3-predictor"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    container = next(c for c in pod["containers"] if c["name"] == "kserve-container")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["image"].startswith("ghcr.io/tickserve/predictor-cuda:")


def test_standard_value_set_runs_a_canary_sized_by_its_hpa_and_routes_to_stable_only(
    kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path
) -> None:
    """The README's Standard-mode canary: ceil(4 x 25 / 100) = 1 canary pod and 3 stable ones, both as HPA bounds
    (KServe leaves the Deployments' replicas to the HPAs; the canary's HPA pins min = max)."""
    values = value_set("standard")
    helm(kserve_controller, "install", kserve_namespace, values, tmp_path)
    expected = kserve_names(values["models"])
    assert expected == {"ticks-1m-v3-predictor", "ticks-1m-v4-predictor", "ticks-1m-transformer"}
    state = settle(kserve_controller, kserve_namespace, expected)

    assert state.kserve("services") == expected
    assert state.hpa_range("ticks-1m-v3-predictor") == (3, 8)
    assert state.hpa_range("ticks-1m-v4-predictor") == (1, 1)
    assert state.canaries("ticks-1m") == [("v4", 25, True)]
    assert state.condition("ticks-1m", "CanaryPredictorReady") == "True"
    assert state.condition("ticks-1m", "Ready") == "True"
    canary_pod = state.deployments["ticks-1m-v4-predictor"]["spec"]["template"]
    assert canary_pod["metadata"]["labels"]["tickserve.io/track"] == "canary"
    env = {e["name"]: e.get("value") for e in canary_pod["spec"]["containers"][0]["env"]}
    assert env["STORAGE_URI"] == "s3://tickserve-models/ticks-1m/4"
    # KServe routes to the transformer and the stable predictor, never to the canary's Service ...
    assert "ticks-1m-v4-predictor" not in ingress_backends(state, "ticks-1m").values()
    assert "ticks-1m-v3-predictor" in ingress_backends(state, "ticks-1m").values()
    # ... so the chart's pool Service spreads requests over both; KServe leaves it exactly as rendered.
    pool = state.services["ticks-1m-predictor-pool"]
    assert not pool["metadata"].get("ownerReferences")
    assert pool["spec"]["selector"] == {ISVC_LABEL: "ticks-1m", "component": "predictor"}


def test_knative_value_set_passes_kserve_admission_and_waits_for_knative_serving(
    kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path
) -> None:
    """Knative mode passes KServe's real webhooks; without Knative Serving in this tier KServe reconciles nothing
    and says why in an event (running Knative's controller here is not done)."""
    values = value_set("knative")
    helm(kserve_controller, "install", kserve_namespace, values, tmp_path)
    state = read(kserve_controller, kserve_namespace)
    assert set(state.isvcs) == {model["name"] for model in values["models"]}
    assert state.isvcs["ticks-1m"]["spec"]["predictor"]["canaryTrafficPercent"] == 10

    def rejected() -> set[str]:
        events = kubernetes.client.CoreV1Api(kserve_controller.api_client).list_namespaced_event(kserve_namespace)
        return {e.involved_object.name for e in events.items if e.reason == "ServerlessModeRejected"}

    wait_for("KServe rejects Knative mode without Knative Serving", lambda: rejected() == set(state.isvcs))
    assert read(kserve_controller, kserve_namespace).kserve("deployments") == set()


def test_kserve_admission_refuses_changing_the_deployment_mode(
    kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path
) -> None:
    values = value_set("cpu")
    helm(kserve_controller, "install", kserve_namespace, values, tmp_path)
    with pytest.raises(CommandFailed, match=re.escape('"inferenceservice.kserve-webhook-server.validator" denied')):
        helm(kserve_controller, "upgrade", kserve_namespace, {**values, "deploymentMode": "Knative"}, tmp_path)


def test_a_knative_canary_is_rolled_back_to_zero_traffic_once(
    kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path
) -> None:
    """Knative mode needs no controller for this: the rollback is one admitted patch of canaryTrafficPercent."""
    controller, ns = kserve_controller, kserve_namespace
    helm(controller, "install", ns, value_set("knative"), tmp_path)
    rollout = as_service_account(controller, ns, "tickserve-rollout")

    result = roll_back_canary(rollout, ns, "ticks-1m")
    assert (result.mode, result.changes) == (
        "Knative",
        ("set canaryTrafficPercent 10 -> 0 (all traffic to the previous revision)",),
    )
    assert read(controller, ns).isvcs["ticks-1m"]["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert not roll_back_canary(rollout, ns, "ticks-1m").changed
    assert not roll_back_canary(rollout, ns, "ticks-15m").changed  # no canary
    assert "canaryTrafficPercent" not in read(controller, ns).isvcs["ticks-15m"]["spec"]["predictor"]


# --- a canary's life ------------------------------------------------------------------------------------------------


def release(stable: str, canary: str | None = None, traffic: int = 25) -> dict[str, Any]:
    """Values of one model with 4..8 predictor pods, stable version `stable` and optionally a canary."""
    model: dict[str, Any] = {
        "name": "ticks-1m",
        "horizon": "1m",
        "stable": {"version": stable, "storageUri": f"s3://tickserve-models/ticks-1m/{stable}"},
    }
    if canary is not None:
        model["canary"] = {
            "version": canary,
            "storageUri": f"s3://tickserve-models/ticks-1m/{canary}",
            "trafficPercent": traffic,
        }
    return {"deploymentMode": "Standard", "models": [model], "predictor": {"minReplicas": 4, "maxReplicas": 8}}


def predictors(*versions: str) -> set[str]:
    return {f"ticks-1m-v{version}-predictor" for version in versions} | {"ticks-1m-transformer"}


def test_a_canary_is_added_stepped_promoted_and_rolled_back_leaving_nothing_behind(
    kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path
) -> None:
    controller, ns = kserve_controller, kserve_namespace
    rollout = as_service_account(controller, ns, "tickserve-rollout")

    helm(controller, "install", ns, release("3"), tmp_path)
    state = settle(controller, ns, predictors("3"))
    assert state.kserve("hpas") == predictors("3")
    assert state.hpa_range("ticks-1m-v3-predictor") == (4, 8)

    # Add a canary at 25%: 1 of the 4 minimum pods moves to it.
    helm(controller, "upgrade", ns, release("3", "4", 25), tmp_path)
    state = settle(controller, ns, predictors("3", "4"))
    assert state.kserve("services") == state.kserve("hpas") == predictors("3", "4")
    assert (state.hpa_range("ticks-1m-v3-predictor"), state.hpa_range("ticks-1m-v4-predictor")) == ((3, 8), (1, 1))
    assert state.canaries("ticks-1m") == [("v4", 25, True)]

    # Step it to 50%: ceil(4 x 50 / 100) = 2.
    helm(controller, "upgrade", ns, release("3", "4", 50), tmp_path)
    state = settle(controller, ns, predictors("3", "4"), until=lambda s: s.canaries("ticks-1m") == [("v4", 50, True)])
    assert (state.hpa_range("ticks-1m-v3-predictor"), state.hpa_range("ticks-1m-v4-predictor")) == ((2, 8), (2, 2))

    # Promote: stable moves to version 4, the canary entry goes. KServe keeps the canary's Deployment, Service and
    # HPA as the stable ones, deletes version 3's Deployment and Service, but not version 3's HPA.
    helm(controller, "upgrade", ns, release("4"), tmp_path)
    state = settle(controller, ns, predictors("4"))
    assert state.kserve("services") == predictors("4")
    assert state.hpa_range("ticks-1m-v4-predictor") == (4, 8)
    assert state.canaries("ticks-1m") == []
    assert (
        ingress_backends(state, "ticks-1m")["ticks-1m-v4-predictor-" + ns + ".example.com"] == "ticks-1m-v4-predictor"
    )
    assert state.kserve("hpas") == predictors("4") | {"ticks-1m-v3-predictor"}  # KServe's leftover
    assert delete_orphaned_hpas(rollout, ns, "ticks-1m") == [
        "deleted orphaned HorizontalPodAutoscaler ticks-1m-v3-predictor"
    ]
    assert read(controller, ns).kserve("hpas") == predictors("4")

    # A new canary, then the rollback, as the rollout ServiceAccount: the canary and all of its objects go, the stable
    # HPA gets its minimum back.
    helm(controller, "upgrade", ns, release("4", "5", 25), tmp_path)
    settle(controller, ns, predictors("4", "5"))
    result = roll_back_canary(rollout, ns, "ticks-1m")
    assert result.changes == (
        "removed canary v5 (25% of traffic)",
        "deleted orphaned HorizontalPodAutoscaler ticks-1m-v5-predictor",
    )
    state = settle(controller, ns, predictors("4"))
    assert "canary" not in state.isvcs["ticks-1m"]["spec"]
    assert state.kserve("services") == state.kserve("hpas") == predictors("4")
    assert state.hpa_range("ticks-1m-v4-predictor") == (4, 8)
    assert state.canaries("ticks-1m") == []
    assert state.condition("ticks-1m", "CanaryPredictorReady") is None

    again = roll_back_canary(rollout, ns, "ticks-1m")
    assert not again.changed and "nothing changed" in str(again)


def test_kserve_alone_leaves_a_removed_canarys_hpa_behind(
    kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path
) -> None:
    """The upstream bug roll_back_canary works around (KServe v0.20.0): removing spec.canary deletes the canary's
    Deployment and Service and restores the stable HPA's minimum, but keeps the canary's HPA, which has no owner
    reference, so garbage collection would never remove it either. When this test fails, KServe has fixed it."""
    controller, ns = kserve_controller, kserve_namespace
    helm(controller, "install", ns, release("3", "4", 25), tmp_path)
    settle(controller, ns, predictors("3", "4"))
    controller.control_plane.kubectl(
        "patch",
        "inferenceservice",
        "ticks-1m",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/canary"}]',
    )
    state = settle(controller, ns, predictors("3"), until=lambda s: s.hpa_range("ticks-1m-v3-predictor") == (4, 8))
    assert state.kserve("services") == predictors("3")
    assert state.kserve("hpas") == predictors("3", "4")
    assert state.hpas["ticks-1m-v4-predictor"]["metadata"].get("ownerReferences") is None
    assert state.hpas["ticks-1m-v3-predictor"]["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"


def test_only_the_rollout_account_may_roll_back(
    kserve_controller: KServeController, kserve_namespace: str, tmp_path: Path
) -> None:
    controller, ns = kserve_controller, kserve_namespace
    helm(controller, "install", ns, release("3", "4", 25), tmp_path)
    settle(controller, ns, predictors("3", "4"))
    with pytest.raises(RollbackError) as refused:
        roll_back_canary(as_service_account(controller, ns, "tickserve-predictor"), ns, "ticks-1m")
    assert refused.value.status == 403
    assert read(controller, ns).canaries("ticks-1m") == [("v4", 25, True)]
