"""The whole registry-sync flow end to end on real parts: alias a version in a real MLflow server, registry-sync
opens a PR on a real Gitea, the PR is merged, the merged repository's chart is rendered with helm and applied
to the real kube-apiserver, and the stored InferenceService carries the canary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from forge_servers import Gitea, MlflowServer
from gitops_support import VALUES_FILE, GitOps, Models, git, seed_gitops
from kube import ControlPlane, InstalledCrds, read_back, server_side_apply

from tickserve.registry_sync.cli import build
from tickserve.registry_sync.metrics import Metrics
from tickserve.registry_sync.settings import RegistrySyncSettings


def test_an_alias_in_mlflow_ends_as_a_canary_on_the_inferenceservice_after_the_pr_is_merged(
    control_plane: ControlPlane,
    crds: InstalledCrds,
    namespace: str,
    mlflow_server: MlflowServer,
    gitea: Gitea,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    helm = control_plane.tools.helm
    monkeypatch.setenv("HELM", str(helm))
    clone_url = gitea.create_repo("gitops-e2e")
    gitops = GitOps("gitops-e2e", clone_url, tmp_path / "checkout", gitea)
    seed_gitops(gitops.checkout, helm, gitea.authenticated_url(clone_url))
    gitea.wait_until_pushed("gitops-e2e")
    models = Models(mlflow_server)
    version = models.version()

    # 1. register and alias in MLflow
    models.alias("challenger", version)
    settings = RegistrySyncSettings(
        tracking_uri=mlflow_server.url,
        repo={
            "url": clone_url,
            "values_file": VALUES_FILE,
            "manifests_command": ["bash", "hack/render-manifests.sh"],
            "workdir": tmp_path / "clone",
        },
        forge={"kind": "gitea", "api_url": gitea.url, "repository": f"{gitea.admin}/gitops-e2e", "token": gitea.token},
        models=[{"registered_model": models.name, "chart_model": "ticks-1m"}],
        metrics_port=None,
    )
    # 2. a PR appears in Gitea
    (outcome,) = build(settings, Metrics()).run_pass()
    assert outcome.result == "proposed"
    (pr,) = gitops.pulls("open")
    # 3. merge it
    gitops.merge(pr["number"])
    merged = gitops.pull()
    assert "canary" in (merged / "manifests" / "prod" / "tickserve.yaml").read_text()

    # 4. helm template of the merged repository, applied to the kube-apiserver
    rendered = control_plane.helm(
        "template", "tickserve", str(merged / "charts" / "tickserve"), "--namespace", namespace,
        "--values", str(merged / VALUES_FILE),
    ).stdout  # fmt: skip
    applied = server_side_apply(control_plane, rendered, namespace=namespace)
    assert "inferenceservice.serving.kserve.io/ticks-1m" in applied

    # 5. the InferenceService shows the canary
    isvc = read_back(control_plane, "inferenceservice", "ticks-1m", namespace)
    (canary,) = isvc["spec"]["canary"]
    assert canary["trafficPercent"] == 10 and canary["predictor"]["name"] == f"v{version}"
    assert models.storage_uri(version) in json.dumps(canary)
    assert isvc["spec"]["predictor"]["name"] == "v1"
    assert git(merged, "log", "-1", "--format=%s").stdout.startswith("Merge")
