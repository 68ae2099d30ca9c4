"""The whole control loop with a real GitOps engine in the middle: registry -> pull request -> merge -> Flux
applies -> KServe reconciles -> alert -> rollback -> revert pull request -> Flux applies.

Real parts: Flux's source-controller and kustomize-controller (the `flux` fixture) pulling the GitOps repository
from a real Gitea and applying `./manifests/prod` to the `kserve_controller`'s API server, where KServe's own
controller reconciles the InferenceService; a real MLflow server; registry-sync (`build`, as its process does); the
quality monitor, Prometheus with monitoring/rules and Alertmanager raising the canary's quality alert and
delivering it to the rollback receiver (rollback_support.bad_canary_alerting); the receiver acting as the
registry-sync process's does (same executor, Flux hold on, as the chart's `registrySync.rollback.fluxHold`).

The self-heal window, pinned down: between the rollback and the revert's merge, git still deploys the bad canary
and Flux's drift correction would put it back. The rollback therefore holds Flux (suspends the Kustomization that
applied the InferenceService, monitoring/rollback/gitops.py): a forced reconcile then applies nothing. Resumed
early by hand, Flux does re-apply the canary (shown below), and the alert's next delivery rolls it back and holds
again, still with one pull request, one tag and one rollback. Merging the revert lets registry-sync release the
hold; Flux applies the merged state and cluster, git and MLflow agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes
import pytest
from flux import KUSTOMIZE, Flux
from forge_servers import Gitea, MlflowServer
from gitops_support import VALUES_FILE, GitOps, Models, git, seed_gitops
from kserve_controller import KServeController, settle, wait_for
from prometheus_client import CollectorRegistry
from rollback_support import bad_canary_alerting, deliver, eventually, hpas, isvc
from ruamel.yaml import YAML

from tickserve.monitoring.rollback.executor import RollbackExecutor, RollbackMetrics
from tickserve.monitoring.rollback.gitops import FluxObject, holds_of
from tickserve.monitoring.rollback.lifecycle import PHASE_ANNOTATION, ROLLBACK_TAG, VERSION_LABEL
from tickserve.monitoring.rollback.receiver import RollbackReceiver
from tickserve.monitoring.rollback.status import model_status
from tickserve.registry_sync.cli import build
from tickserve.registry_sync.metrics import Metrics
from tickserve.registry_sync.settings import RegistrySyncSettings

TOKEN = "gitops-loop-token"
MODEL = "ticks-1m"
STABLE, CANARY = f"{MODEL}-v1-predictor", f"{MODEL}-v2-predictor"
TRANSFORMER = f"{MODEL}-transformer"


def main_sha(gitops: GitOps) -> str:
    git(gitops.checkout, "fetch", "--quiet", "origin")
    return git(gitops.checkout, "rev-parse", "origin/main").stdout.strip()


def canary_version(api_client: kubernetes.client.ApiClient, namespace: str) -> str | None:
    canaries = isvc(api_client, namespace, MODEL)["spec"].get("canary") or []
    return canaries[0]["predictor"]["labels"][VERSION_LABEL] if canaries else None


def handled(flux: Flux, kustomization: str, stamp: str) -> None:
    """Wait until Flux has handled the reconcile requested at `stamp` (whatever it then did)."""
    wait_for(
        f"Flux handles the reconcile of {kustomization} requested at {stamp}",
        lambda: (flux.get(KUSTOMIZE, kustomization).get("status") or {}).get("lastHandledReconcileAt") == stamp,
    )


@pytest.mark.integration
def test_a_merged_canary_reaches_kserve_through_flux_and_its_rollback_holds_until_the_revert_is_merged(
    flux: Flux,
    kserve_controller: KServeController,
    kserve_namespace: str,
    mlflow_server: MlflowServer,
    gitea: Gitea,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plane = kserve_controller.control_plane
    monkeypatch.setenv("HELM", str(plane.tools.helm))  # registry-sync re-renders manifests/ in its pull requests
    api, namespace = plane.api_client, kserve_namespace

    # 1. Deploy: the GitOps repository (chart, prod values, rendered manifests) on Gitea, applied by Flux.
    name = f"gitops-{namespace}"
    clone_url = gitea.create_repo(name)
    gitops = GitOps(name, clone_url, tmp_path / "checkout", gitea)
    seed_gitops(gitops.checkout, plane.tools.helm, gitea.authenticated_url(clone_url))
    gitea.wait_until_pushed(name)
    flux.git_repository(name, clone_url, gitea.admin, gitea.token)
    flux.kustomization(name, name, "./manifests/prod", namespace)
    flux.sync(name, name, main_sha(gitops))
    settle(kserve_controller, namespace, {TRANSFORMER, STABLE})
    assert FluxObject.of(isvc(api, namespace, MODEL)) == FluxObject("flux-system", name), "Flux labels what it applies"

    # 2. Propose: v2 becomes the challenger in MLflow; registry-sync opens the canary pull request.
    models = Models(mlflow_server)
    assert models.version() == "2"
    models.alias("challenger", "2")
    settings = RegistrySyncSettings(
        tracking_uri=mlflow_server.url,
        repo={"url": clone_url, "values_file": VALUES_FILE, "manifests_command": ["bash", "hack/render-manifests.sh"],
              "workdir": tmp_path / "clone"},
        forge={"kind": "gitea", "api_url": gitea.url, "repository": f"{gitea.admin}/{name}", "token": gitea.token},
        models=[{"registered_model": models.name, "chart_model": MODEL}],
        retries=2, retry_backoff_seconds=0.1, metrics_port=None,
    )  # fmt: skip
    controller = build(settings, Metrics())
    [proposal] = controller.run_pass()
    assert proposal.result == "proposed" and proposal.pr is not None

    # 3. Apply: the merge reaches the InferenceService through Flux; KServe makes the canary's objects.
    gitops.merge(proposal.pr.number)
    flux.sync(name, name, main_sha(gitops))
    state = settle(kserve_controller, namespace, {TRANSFORMER, STABLE, CANARY})
    assert canary_version(api, namespace) == "2"
    assert state.canaries(MODEL) == [("v2", settings.canary_traffic_percent, True)]
    assert {STABLE, CANARY} <= set(hpas(api, namespace))
    assert [o.result for o in controller.run_pass()] == ["in_sync"]

    # 4. and 5. Detect and roll back: the quality alert, through Prometheus and Alertmanager, to the receiver.
    registry = CollectorRegistry()

    def rollbacks() -> float:
        return registry.get_sample_value("tickserve_rollbacks_total", {"namespace": namespace, "model": MODEL}) or 0

    def reconcile(registered: str) -> str:
        return "; ".join(f"{o.result} {o.detail}" for o in controller.run_pass(only=registered))

    executor = RollbackExecutor(
        api, controller.reconciler.registry, {MODEL: models.name}, reconcile, metrics=RollbackMetrics(registry)
    )
    receiver = RollbackReceiver("127.0.0.1", 0, TOKEN, executor.execute).start()
    receiver_url = f"http://127.0.0.1:{receiver.port}"
    try:
        with bad_canary_alerting(tmp_path / "alerting", redis_url, receiver_url, TOKEN, namespace=namespace,
                                 model=MODEL, versions={"stable": "1", "canary": "2"}):  # fmt: skip
            eventually(lambda: rollbacks() == 1, 120, "the rollback")
            assert receiver.drain(60)
        assert canary_version(api, namespace) is None
        kustomization = flux.get(KUSTOMIZE, name)
        assert kustomization["spec"]["suspend"] is True
        assert holds_of(kustomization) == {"holds": {f"{namespace}/{MODEL}": "2"}, "resume": True}
        [revert] = gitops.pulls("open")
        assert json.loads(models.tags("2")[ROLLBACK_TAG])["alert"] == "TickserveCanaryQualityWorse"
        status = model_status(controller.reconciler, api, namespace, settings.models[0], None)
        assert status.verdict.phase == "RolledBack" and status.hold == f"v2 on Kustomization flux-system/{name}"

        # 6. The self-heal window. Held, Flux handles a forced reconcile and applies nothing: git still has the
        # canary, the cluster keeps the rollback.
        handled(flux, name, flux.request_reconcile(KUSTOMIZE, name))
        assert canary_version(api, namespace) is None

        # What the hold prevents: resumed by hand before the merge, Flux's drift correction re-applies git's canary.
        resume = {"spec": {"suspend": False}}
        kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(*KUSTOMIZE[:2], "flux-system",
                                                                               KUSTOMIZE[2], name, resume)  # fmt: skip
        handled(flux, name, flux.request_reconcile(KUSTOMIZE, name))
        assert canary_version(api, namespace) == "2", "Flux put the rolled-back canary back"

        # The alert still fires; its next delivery rolls the canary back again and restores the hold.
        deliver(receiver_url, TOKEN, namespace=namespace, model=MODEL, version="2")
        assert receiver.drain(60)
    finally:
        receiver.stop()
    assert canary_version(api, namespace) is None
    assert flux.get(KUSTOMIZE, name)["spec"]["suspend"] is True
    assert [pr["number"] for pr in gitops.pulls("open")] == [revert["number"]]
    assert rollbacks() == 1, "one rollback, one tag, one pull request per (model, version)"
    settle(kserve_controller, namespace, {TRANSFORMER, STABLE})

    # 7. Merge the revert: registry-sync finds git in sync and releases the hold; Flux applies the merged state.
    gitops.merge(revert["number"])
    outcomes = controller.run_pass()
    assert [o.result for o in outcomes] == ["in_sync"]
    executor.tidy(namespace, {o.model: o.revision for o in outcomes if o.result == "in_sync"})
    kustomization = flux.get(KUSTOMIZE, name)
    assert not kustomization["spec"].get("suspend")
    assert holds_of(kustomization)["holds"] == {}
    applied = flux.sync(name, name, main_sha(gitops))
    state = settle(kserve_controller, namespace, {TRANSFORMER, STABLE})

    # Cluster, git and MLflow agree; nothing of the canary is left; registry-sync proposes nothing new.
    served = isvc(api, namespace, MODEL)
    assert "canary" not in served["spec"]
    assert served["spec"]["predictor"]["labels"][VERSION_LABEL] == "1"
    assert served["metadata"]["annotations"][PHASE_ANNOTATION] == "RolledBack"
    assert state.kserve("deployments") == {TRANSFORMER, STABLE}
    assert CANARY not in state.kserve("services") and [h for h in hpas(api, namespace) if "predictor" in h] == [STABLE]
    inventory = [entry["id"] for entry in applied["inventory"]["entries"]]
    assert any(entry.endswith(f"_{MODEL}_serving.kserve.io_InferenceService") for entry in inventory)
    assert not any("v2" in entry for entry in inventory)
    values = YAML(typ="safe").load(gitops.read(VALUES_FILE))["models"][0]
    assert values.get("canary") is None and values["stable"]["version"] == "1"
    version = controller.reconciler.registry.read(models.name).version("2")
    assert ROLLBACK_TAG in version.tags and "challenger" not in version.aliases
    assert [o.result for o in controller.run_pass()] == ["in_sync"]
    assert gitops.pulls("open") == []
    assert model_status(controller.reconciler, api, namespace, settings.models[0], None).hold == "-"
