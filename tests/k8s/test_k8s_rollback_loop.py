"""A canary rollback end to end on real parts, exactly once under Alertmanager's at-least-once delivery.

A Standard-mode InferenceService with stable v1 and canary v2 runs under KServe's own controller (the
`kserve_controller` plane); the GitOps repository on a real Gitea deploys the same; a real MLflow server names v2
the `challenger`. A real Alertmanager, configured from monitoring/alertmanager.example.yml, delivers a rollback
alert to the rollback receiver (the registry-sync process's endpoint, bearer token required). The alert comes from
real metrics: the quality monitor (`tickserve monitor`, a process) scores the canary's predictions as worse than
stable's (30% against 80% right, written to Redis as the transformer and ingest write them), its judge says
`worse`, and a real Prometheus with monitoring/rules loaded (every `for:` shortened to 2s) fires
TickserveCanaryQualityWorse.

Outcome: the canary is gone from the cluster (no HPA left behind), the revert pull request is open on Gitea,
MLflow's v2 carries `tickserve.rollback` and no alias, the InferenceService records `RolledBack`; a forced
duplicate delivery and a resolve-then-refire leave exactly one of each; merging the revert PR brings git back in
line and registry-sync then proposes nothing; `tickserve rollout status` shows the phase.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import httpx
import pytest
from forge_servers import Gitea, MlflowServer
from gitops_support import VALUES_FILE, GitOps, Models, seed_gitops
from kserve_controller import KServeController, mark_deployments_ready, wait_for
from kube import run, server_side_apply
from prometheus_client import CollectorRegistry
from rollback_support import bad_canary_alerting, deliver, eventually, hpas, isvc, rollback_events
from ruamel.yaml import YAML

from tickserve.monitoring.rollback.cli import main as rollout_cli
from tickserve.monitoring.rollback.executor import RollbackExecutor, RollbackMetrics
from tickserve.monitoring.rollback.lifecycle import PHASE_ANNOTATION, ROLLBACK_TAG
from tickserve.monitoring.rollback.receiver import RollbackReceiver
from tickserve.registry_sync.cli import build
from tickserve.registry_sync.metrics import Metrics
from tickserve.registry_sync.settings import RegistrySyncSettings

TOKEN = "rollback-e2e-token"
MODEL = "ticks-1m"
CANARY_VALUES = """
deploymentMode: Standard
models:
  - name: ticks-1m
    horizon: 1m
    stable:
      version: "1"
      storageUri: s3://tickserve-models/ticks-1m/1
    canary:
      version: "2"
      storageUri: s3://tickserve-models/ticks-1m/2
      trafficPercent: 25
predictor:
  minReplicas: 4
  maxReplicas: 8
"""


def fire(alertmanager_url: str, namespace: str, *, resolved: bool = False) -> None:
    """Post the canary's quality alert to Alertmanager's API, as Prometheus's notifier does."""
    now = dt.datetime.now(dt.UTC)
    alert = {
        "labels": {"alertname": "TickserveCanaryQualityWorse", "tickserve_action": "rollback", "severity": "critical",
                   "model": MODEL, "model_version": "2", "namespace": namespace},
        "annotations": {"summary": "quality judge: canary worse than stable (n canary 812, stable 3,240)"},
        "startsAt": (now - dt.timedelta(minutes=1)).isoformat(),
        "endsAt": (now if resolved else now + dt.timedelta(minutes=5)).isoformat(),
    }  # fmt: skip
    httpx.post(f"{alertmanager_url}/api/v2/alerts", json=[alert], timeout=10).raise_for_status()


@pytest.mark.integration
def test_a_bad_canary_is_rolled_back_once_in_the_cluster_in_git_and_in_mlflow(
    kserve_controller: KServeController,
    kserve_namespace: str,
    mlflow_server: MlflowServer,
    gitea: Gitea,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    redis_url: str,
) -> None:
    plane = kserve_controller.control_plane
    helm = plane.tools.helm
    monkeypatch.setenv("HELM", str(helm))
    api = plane.api_client

    # The GitOps repository deploys stable v1 and canary v2; MLflow agrees (champion 1, challenger 2).
    repo_name = f"gitops-rollback-{kserve_namespace}"
    clone_url = gitea.create_repo(repo_name)
    gitops = GitOps(repo_name, clone_url, tmp_path / "checkout", gitea)
    seed_gitops(gitops.checkout, helm, gitea.authenticated_url(clone_url))
    gitea.wait_until_pushed(repo_name)
    gitops.commit_to_main(VALUES_FILE, CANARY_VALUES.lstrip(), "canary v2 at 25%")
    models = Models(mlflow_server)
    assert models.version() == "2"
    models.alias("challenger", "2")

    # The cluster runs what main says, reconciled by KServe.
    rendered = run([str(helm), "template", "tickserve", str(gitops.pull() / "charts" / "tickserve"),
                    "-n", kserve_namespace, "-f", str(gitops.checkout / VALUES_FILE)]).stdout  # fmt: skip
    only_isvc = "\n---\n".join(doc for doc in rendered.split("\n---\n") if "kind: InferenceService" in doc)
    server_side_apply(plane, only_isvc, namespace=kserve_namespace)
    wait_for("canary reconciled", lambda: mark_deployments_ready(api, kserve_namespace) is not None and
             len((isvc(api, kserve_namespace, MODEL).get("status") or {}).get("canaryStatuses") or []) == 1, timeout=60)  # fmt: skip
    assert {f"{MODEL}-v1-predictor", f"{MODEL}-v2-predictor"} <= set(hpas(api, kserve_namespace))

    settings = RegistrySyncSettings(
        tracking_uri=mlflow_server.url,
        repo={"url": clone_url, "values_file": VALUES_FILE, "manifests_command": ["bash", "hack/render-manifests.sh"],
              "workdir": tmp_path / "clone"},
        forge={"kind": "gitea", "api_url": gitea.url, "repository": f"{gitea.admin}/{repo_name}",
               "token": gitea.token},
        models=[{"registered_model": models.name, "chart_model": MODEL}],
        retries=2, retry_backoff_seconds=0.1, metrics_port=None,
    )  # fmt: skip
    controller = build(settings, Metrics())
    assert [o.result for o in controller.run_pass()] == ["in_sync"], "git, MLflow and the cluster agree at first"

    def reconcile(registered: str) -> str:
        return "; ".join(f"{o.result} {o.detail}" for o in controller.run_pass(only=registered))

    registry = CollectorRegistry()
    metrics = RollbackMetrics(registry)

    def rollbacks() -> float:
        return (
            registry.get_sample_value("tickserve_rollbacks_total", {"namespace": kserve_namespace, "model": MODEL}) or 0
        )

    executor = RollbackExecutor(api, controller.reconciler.registry, {MODEL: models.name}, reconcile, metrics=metrics)
    receiver = RollbackReceiver("127.0.0.1", 0, TOKEN, executor.execute).start()
    receiver_url = f"http://127.0.0.1:{receiver.port}"
    try:
        with bad_canary_alerting(tmp_path / "alerting", redis_url, receiver_url, TOKEN, namespace=kserve_namespace,
                                 model=MODEL, versions={"stable": "1", "canary": "2"}) as manager:  # fmt: skip
            eventually(lambda: rollbacks() == 1, 120, "the rollback")
            assert receiver.drain(60)

            # At-least-once delivery: the same notification again, and a resolve followed by a refire.
            deliver(receiver_url, TOKEN, namespace=kserve_namespace, model=MODEL, version="2")
            fire(manager.url, kserve_namespace, resolved=True)
            time.sleep(2)
            fire(manager.url, kserve_namespace)
            time.sleep(3)
            assert receiver.drain(60)
    finally:
        receiver.stop()

    # Cluster: no canary, and none of its objects left behind.
    served = isvc(api, kserve_namespace, MODEL)
    assert "canary" not in served["spec"]
    assert [name for name in hpas(api, kserve_namespace) if "predictor" in name] == [f"{MODEL}-v1-predictor"]
    assert served["metadata"]["annotations"][PHASE_ANNOTATION] == "RolledBack"
    assert len(rollback_events(api, kserve_namespace)) == 1
    # Registry: one tag, alias gone, so registry-sync will not propose v2 again.
    version = controller.reconciler.registry.read(models.name).version("2")
    assert json.loads(version.tags[ROLLBACK_TAG])["alert"] == "TickserveCanaryQualityWorse"
    assert "challenger" not in version.aliases
    # Git: exactly one revert PR, retiring the canary.
    pulls = gitops.pulls("open")
    assert len(pulls) == 1, [p["title"] for p in pulls]
    assert rollbacks() == 1

    # Merging the revert brings git in line with the cluster; registry-sync then proposes nothing new.
    gitops.merge(pulls[0]["number"])
    merged = YAML(typ="safe").load(gitops.read(VALUES_FILE))
    assert merged["models"][0].get("canary") is None
    assert merged["models"][0]["stable"]["version"] == "1"
    assert [o.result for o in controller.run_pass()] == ["in_sync"]
    assert gitops.pulls("open") == []

    kubeconfig = plane.kubeconfig
    config = tmp_path / "registry-sync.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML; the token comes from the environment, as the command requires
            {
                "tracking_uri": mlflow_server.url,
                "repo": {"url": clone_url, "values_file": VALUES_FILE, "workdir": str(tmp_path / "status-clone")},
                "forge": {"kind": "gitea", "api_url": gitea.url, "repository": f"{gitea.admin}/{repo_name}"},
                "models": [{"registered_model": models.name, "chart_model": MODEL}],
            }
        )
    )
    monkeypatch.setenv("TICKSERVE_REGISTRY_SYNC_FORGE__TOKEN", gitea.token)
    assert rollout_cli(["status", "--config", str(config), "--namespace", kserve_namespace,
                        "--kubeconfig", str(kubeconfig)]) == 0  # fmt: skip
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(MODEL))
    assert "RolledBack" in row and "v1" in row
