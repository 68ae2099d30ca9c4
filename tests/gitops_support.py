"""Plain helpers (no pytest) for tests that drive registry-sync against real servers: a GitOps repository seeded
with the tickserve chart on Gitea or a bare repository, and an MLflow registered model to move aliases on.
Used by tests/registry_sync/conftest.py and tests/k8s/test_k8s_registry_sync_e2e.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge_servers import Gitea, MlflowServer
from mlflow import MlflowClient

REPO_ROOT = Path(__file__).resolve().parents[1]
PROD_VALUES = """# The production value set of this GitOps repository; registry-sync edits models[] here.
deploymentMode: Standard
models:
  - name: ticks-1m
    horizon: 1m
    stable:
      version: "1"
      storageUri: s3://tickserve-models/ticks-1m/1
predictor:
  minReplicas: 2
  maxReplicas: 4
"""
VALUES_FILE = "charts/tickserve/ci/prod-values.yaml"
GOOD_METRICS = {"test_accuracy": 0.61, "sharpe": 1.7}


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {result.stderr}")
    return result


@dataclass
class GitOps:
    """A GitOps repository on Gitea and a checkout of it the test can read and push to."""

    name: str
    clone_url: str
    checkout: Path
    gitea: Gitea

    def pull(self) -> Path:
        git(self.checkout, "fetch", "--quiet", "origin")
        git(self.checkout, "checkout", "--quiet", "--force", "-B", "main", "origin/main")
        return self.checkout

    def read(self, path: str, ref: str = "origin/main") -> str:
        git(self.checkout, "fetch", "--quiet", "origin", "+refs/heads/*:refs/remotes/origin/*")
        return git(self.checkout, "show", f"{ref}:{path}").stdout

    def pulls(self, state: str = "all") -> list[dict[str, Any]]:
        with self.gitea.api() as api:
            response = api.get(f"/repos/{self.gitea.admin}/{self.name}/pulls", params={"state": state, "limit": 50})
            response.raise_for_status()
            return response.json()

    def merge(self, number: int) -> None:
        with self.gitea.api() as api:
            response = api.post(f"/repos/{self.gitea.admin}/{self.name}/pulls/{number}/merge", json={"Do": "merge"})
            assert response.status_code == 200, response.text

    def close(self, number: int) -> None:
        with self.gitea.api() as api:
            api.patch(
                f"/repos/{self.gitea.admin}/{self.name}/pulls/{number}", json={"state": "closed"}
            ).raise_for_status()

    def comments(self, number: int) -> list[str]:
        with self.gitea.api() as api:
            response = api.get(f"/repos/{self.gitea.admin}/{self.name}/issues/{number}/comments")
            response.raise_for_status()
            return [comment["body"] for comment in response.json()]

    def branches(self) -> list[str]:
        with self.gitea.api() as api:
            response = api.get(f"/repos/{self.gitea.admin}/{self.name}/branches", params={"limit": 50})
            response.raise_for_status()
            return sorted(branch["name"] for branch in response.json())

    def commit_to_main(self, path: str, text: str, message: str) -> str:
        """Someone else's change landing on main (pushed straight, as after a merge)."""
        checkout = self.pull()
        (checkout / path).write_text(text)
        git(checkout, "commit", "--quiet", "-am", message)
        git(checkout, "push", "--quiet", "origin", "HEAD:main")
        return git(checkout, "rev-parse", "HEAD").stdout.strip()


def seed_gitops(checkout: Path, helm: Path, push_url: str) -> None:
    """Write the GitOps repository's first commit in `checkout` and push it to `push_url` as main."""
    shutil.copytree(
        REPO_ROOT / "charts" / "tickserve", checkout / "charts" / "tickserve", ignore=shutil.ignore_patterns("ci")
    )
    (checkout / "charts" / "tickserve" / "ci").mkdir()
    (checkout / VALUES_FILE).write_text(PROD_VALUES)
    (checkout / "hack").mkdir()
    shutil.copy2(REPO_ROOT / "hack" / "render-manifests.sh", checkout / "hack" / "render-manifests.sh")
    subprocess.run(
        ["bash", "hack/render-manifests.sh"],
        cwd=checkout,
        check=True,
        capture_output=True,
        env={**os.environ, "HELM": str(helm)},
    )
    git(checkout, "init", "--quiet", "-b", "main")
    git(checkout, "add", "--all")
    git(checkout, "commit", "--quiet", "-m", "initial GitOps repository")
    git(checkout, "remote", "add", "origin", push_url)
    git(checkout, "push", "--quiet", "origin", "main")


class Models:
    """Registers models and versions on the real MLflow server, each test under its own model name."""

    def __init__(self, server: MlflowServer) -> None:
        self.client = MlflowClient(server.url, server.url)
        self.name = f"signal-1m-{uuid.uuid4().hex[:8]}"
        self.client.create_registered_model(self.name)
        experiment = self.client.get_experiment_by_name("registry-sync-tests")
        self.experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment("registry-sync-tests")
        )
        # version 1 is the champion the GitOps repository already deploys as stable
        self.alias("champion", self.version())

    def version(self, metrics: dict[str, float] | None = None) -> str:
        """A new version whose run logged `metrics` (passing the default gates unless told otherwise)."""
        run = self.client.create_run(self.experiment_id)
        for key, value in (GOOD_METRICS if metrics is None else metrics).items():
            self.client.log_metric(run.info.run_id, key, value)
        self.client.set_terminated(run.info.run_id)
        source = f"{run.info.artifact_uri}/model"
        return str(self.client.create_model_version(self.name, source, run_id=run.info.run_id).version)

    def alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, version)

    def unalias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.name, alias)

    def tag(self, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(self.name, version, key, value)

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(self.name, version).tags)

    def storage_uri(self, version: str) -> str:
        return self.client.get_model_version_download_uri(self.name, version)
